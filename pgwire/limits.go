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

	// DefaultMaxEvidenceRows is how many rows of a result are hashed for
	// value evidence (TrackerOptions.Evidence). The source of an N+1 is the
	// page of parents the application loops over: ORMs and applications
	// page by tens or hundreds, and a loop over more than 256 parents is
	// proven by its first 256 keys just as well. Rows past it are counted,
	// not read, and the result is marked Truncated.
	DefaultMaxEvidenceRows = 256
	// DefaultMaxEvidenceColumns is how many columns of a result are hashed:
	// the key a loop reads is almost always among the first columns of the
	// parent's row (its id, then its foreign keys). Columns past it are not
	// read, and the result is marked Truncated.
	DefaultMaxEvidenceColumns = 16
	// MaxEvidenceColumnsLimit is the largest MaxEvidenceColumns accepted
	// (larger values are cut to it): the tracker keeps a result's format
	// codes as one 64-bit mask.
	MaxEvidenceColumnsLimit = 64
	// DefaultEvidenceBudgetBytes is a suggested size for an EvidenceBudget
	// shared by all the trackers of a process: room for about 800 results
	// of 256 rows of 16 columns, or 200 000 of one row.
	DefaultEvidenceBudgetBytes = 64 << 20
)

// Bounds of the value evidence that are not options.
const (
	// maxParamKeys is how many parameters of a Bind get a key in
	// Execution.ParamKeys; the rest of a wider Bind (a multi-row INSERT) is
	// not keyed, and ParamKeys is shorter than NumParams. A loop's key is one
	// of the first parameters; the bound keeps the cost of a wide Bind to
	// its block and 512 bytes of keys, and the parameters' format codes in
	// one 64-bit mask.
	maxParamKeys = 64
	// maxParamOIDs is how many parameter type OIDs of a Parse are kept on
	// its statement (those of the keyed parameters).
	maxParamOIDs = maxParamKeys
	// keepKeysCap is the largest scratch buffer of result digests (in keys,
	// 8 bytes each) kept between results: 8 KB per connection; a larger
	// result allocates its own while it streams.
	keepKeysCap = 1024
)
