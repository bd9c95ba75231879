package pgwire

// Limits of a Tracker. Each is a TrackerOptions field (and a proxy Config
// field of the same name); these are the defaults.
const (
	// DefaultMaxMessageBytes is the largest message accepted from either side:
	// PostgreSQL's own limit for a message (PQ_LARGE_MESSAGE_LIMIT, 1 GB - 1,
	// src/include/libpq/libpq.h). Messages are streamed, never buffered whole.
	DefaultMaxMessageBytes = 1<<30 - 1
	// DefaultMaxSQLBytes is how much of a statement's text the tracker keeps.
	DefaultMaxSQLBytes = 64 << 10
	// DefaultMaxStatements bounds the prepared statements (and portals) the
	// tracker remembers per connection.
	DefaultMaxStatements = 10000
	// DefaultMaxPending bounds the client messages awaiting a server reply.
	DefaultMaxPending = 100000
	// DefaultMaxParamBytes bounds the parameter values kept for one Bind
	// when they are kept at all (TrackerOptions.KeepParams).
	DefaultMaxParamBytes = 1 << 20
)
