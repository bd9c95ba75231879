package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nplus1/nplus1/pgwire"
)

// Upstream TLS modes, as in libpq's sslmode (verify-ca is treated as verify-full).
const (
	SSLDisable    = "disable"
	SSLPrefer     = "prefer"
	SSLRequire    = "require"
	SSLVerifyFull = "verify-full"
)

// Relay modes (Config.Relay).
const (
	RelayAuto       = "auto"
	RelayGoroutines = "goroutines"
)

// Limits of the authentication exchange, which the proxy reads whole; the
// tracker's limits (pgwire.DefaultMax*) are the defaults of the Config fields
// of the same names.
const (
	// maxAuthMessageLen bounds messages of the authentication exchange
	// (PG_MAX_AUTH_TOKEN_LENGTH is 65535).
	maxAuthMessageLen = 1 << 20
)

// Login defaults.
const (
	// DefaultLoginTimeout is PostgreSQL's authentication_timeout and
	// PgBouncer's client_login_timeout: a client that needs longer than a
	// minute to log in is not coming.
	DefaultLoginTimeout = time.Minute
	// DefaultMaxLoginConnections is how many clients may be logging in at
	// once. A login takes one or two round trips to the server, so even a
	// busy pool that reconnects everything at once stays far below it.
	DefaultMaxLoginConnections = 256
)

// Config configures a Server. Zero values take the defaults above.
type Config struct {
	// Upstream is the PostgreSQL server's host:port.
	Upstream string
	// UpstreamSSLMode is one of SSLDisable (default), SSLPrefer, SSLRequire,
	// SSLVerifyFull.
	UpstreamSSLMode string
	// UpstreamTLS is the client TLS configuration for the upstream side; for
	// SSLVerifyFull it must carry RootCAs (nil means the system pool) and the
	// ServerName defaults to the upstream host.
	UpstreamTLS *tls.Config
	// TLS, when set, lets clients negotiate TLS with the proxy (SSLRequest or
	// direct TLS with ALPN "postgresql"). Nil answers SSLRequest with 'N'.
	TLS *tls.Config

	// MaxConnections bounds concurrent client connections (0: unlimited).
	MaxConnections int
	// ConnectTimeout bounds dialing the upstream and the TLS handshakes.
	ConnectTimeout time.Duration
	// LoginTimeout bounds the whole login of a client, from accept to the
	// server's first ReadyForQuery: startup, TLS and authentication (default
	// DefaultLoginTimeout). A client still logging in then gets 57014 and is
	// closed, so silent clients cannot hold slots.
	LoginTimeout time.Duration
	// MaxLoginConnections bounds the connections that have not finished
	// logging in (default DefaultMaxLoginConnections; negative: unlimited).
	// Past it a new connection gets 53300 at once, before its startup packet,
	// so a flood of clients that connect and stay silent can hold at most
	// this many slots, each for at most LoginTimeout.
	MaxLoginConnections int
	// MaxMessageBytes rejects larger messages with 08P01.
	MaxMessageBytes int
	// MaxSQLBytes, MaxStatements, MaxPending bound the tracker (see the defaults).
	MaxSQLBytes   int
	MaxStatements int
	MaxPending    int

	// KeepParams fills pgwire.Execution.Params with the bound parameter values, for
	// recording (nplus1 proxy --record); off by default, as the values are
	// the application's data. MaxParamBytes bounds them per Bind (0: the
	// default).
	KeepParams    bool
	MaxParamBytes int

	// Evidence makes the tracker attach value evidence to each
	// pgwire.Execution (ParamKeys, Result: keyed digests of the bound
	// parameters and of the first rows of results, never the values), so
	// that the detector can prove an N+1 from the data flow. Off by
	// default. MaxEvidenceRows and MaxEvidenceColumns bound the digests of
	// one result (0: pgwire.DefaultMaxEvidenceRows and
	// DefaultMaxEvidenceColumns).
	Evidence           bool
	MaxEvidenceRows    int
	MaxEvidenceColumns int
	// EvidenceBudget bounds the memory of the evidence of all connections
	// until the consumer of Events gives it back (see pgwire.EvidenceBudget);
	// an execution dropped because Events is full gives its share back at
	// once. Nil: no bound beyond the per-result ones.
	EvidenceBudget *pgwire.EvidenceBudget

	// Events receives one pgwire.Execution per executed statement. The proxy never
	// blocks on it: when it is full the event is dropped and counted in
	// Stats.EventsDropped. Nil disables tracking.
	Events chan<- *pgwire.Execution

	// Relay is how established sessions are relayed: RelayAuto (the
	// default) puts plaintext sessions on epoll event loops where the
	// platform has them (Linux), and the rest on goroutine pumps;
	// RelayGoroutines puts every session on pumps.
	Relay string
	// RelayLoops is how many event loops relay sessions (RelayAuto); 0:
	// DefaultRelayLoops of GOMAXPROCS.
	RelayLoops int

	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock (wallNow when nil); tests may replace it.
	Now func() time.Time
}

// MaxRelayLoops bounds Config.RelayLoops: each loop is an OS thread.
const MaxRelayLoops = 1024

// DefaultRelayLoops is how many event loops relay sessions when
// Config.RelayLoops is 0, for procs Ps (GOMAXPROCS): one per two Ps, since
// a loop spends most of its time in system calls whose kernel work (TCP on
// loopback, waking the peer) leaves its P to the rest of the program, and
// one with a single P. There, sysmon hands the P to the analyzer and the
// handshakes while the loop waits in epoll_wait, and the loop yields it
// every loopYield when busy: on one CPU, pgbench -S -M prepared cost 47 µs
// of CPU per transaction at -c 1 and 27-30 at -c 8 on one loop, against 77
// and 36-41 on goroutine pumps.
func DefaultRelayLoops(procs int) int {
	return max(1, procs/2)
}

func (c *Config) setDefaults() error {
	if c.Upstream == "" {
		return errors.New("upstream address is required")
	}
	switch c.UpstreamSSLMode {
	case "":
		c.UpstreamSSLMode = SSLDisable
	case SSLDisable, SSLPrefer, SSLRequire, SSLVerifyFull:
	case "verify-ca":
		c.UpstreamSSLMode = SSLVerifyFull
	case "allow":
		c.UpstreamSSLMode = SSLPrefer
	default:
		return fmt.Errorf("upstream sslmode %q: want disable, prefer, require or verify-full", c.UpstreamSSLMode)
	}
	switch c.Relay {
	case "":
		c.Relay = RelayAuto
	case RelayAuto, RelayGoroutines:
	default:
		return fmt.Errorf("relay %q: want %s or %s", c.Relay, RelayAuto, RelayGoroutines)
	}
	if c.RelayLoops < 0 || c.RelayLoops > MaxRelayLoops {
		return fmt.Errorf("relay loops %d: want 0 (DefaultRelayLoops) to %d", c.RelayLoops, MaxRelayLoops)
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.LoginTimeout <= 0 {
		c.LoginTimeout = DefaultLoginTimeout
	}
	if c.MaxLoginConnections == 0 {
		c.MaxLoginConnections = DefaultMaxLoginConnections
	}
	// The tracker limits (MaxMessageBytes, MaxSQLBytes, MaxStatements,
	// MaxPending, MaxParamBytes, MaxEvidenceRows, MaxEvidenceColumns) take
	// their defaults in pgwire.TrackerOptions.
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = wallNow
	}
	return nil
}

// wallNow is the proxy's clock: the wall clock without Go's monotonic
// reading, so that an execution's duration is End minus Start as written
// (in a recording, say) and a replay computes the very times the live run
// had. A wall-clock step can make a duration negative; the analysis takes
// such an execution as instantaneous.
func wallNow() time.Time { return time.Now().Round(0) }
