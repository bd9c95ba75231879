package inspect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/internal/lru"
)

// Defaults for the zero fields of Options.
const (
	DefaultStatementTimeout = 2 * time.Second
	DefaultInterval         = 250 * time.Millisecond // at most 4 inspections a second
	DefaultQueueSize        = 64
	DefaultMaxPlans         = 1000
	DefaultTTL              = 5 * time.Minute
	DefaultConnectTimeout   = 10 * time.Second
	// maxPlanBytes bounds the plan text kept per fingerprint; a larger plan
	// is judged but not kept for the API.
	maxPlanBytes = 256 << 10
	// maxCachedBytes bounds the plan text kept in all.
	maxCachedBytes = 16 << 20
	// failedTTL is how long a failed inspection is remembered before the
	// shape is tried again.
	failedTTL = time.Minute
	// maxBackoff bounds the wait between two connection attempts.
	maxBackoff = 30 * time.Second
)

// Options configure an Inspector.
type Options struct {
	// Config is the inspection connection's (ParseURL's); required.
	Config *pgx.ConnConfig
	Logger *slog.Logger // nil discards
	// StatementTimeout bounds each statement (SET LOCAL statement_timeout).
	StatementTimeout time.Duration
	// Interval is the least time between two inspections (rate limit).
	Interval time.Duration
	// QueueSize bounds the requests waiting for the connection.
	QueueSize int
	// MaxPlans bounds the fingerprints whose answer is cached.
	MaxPlans int
	// TTL is how long an answer (and a table's catalog facts) is reused.
	TTL time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Stats are the inspector's counters.
type Stats struct {
	Inspected uint64 // inspections run
	Failed    uint64 // of them, failed (privileges, timeout, a query that does not plan)
	Dropped   uint64 // requests dropped because the queue was full
	Lost      uint64 // answers dropped because Results was not read
	Cached    uint64 // requests answered from the cache
	Connected bool   // the connection is up now
}

// Inspector owns the inspection connection. Inspect and Plan are safe for
// concurrent use; Run is the one goroutine that uses the connection.
type Inspector struct {
	opts    Options
	log     *slog.Logger
	target  string // host:port
	queue   chan detector.InspectionRequest
	results chan detector.Inspection
	// attempted is closed once Run has tried to connect (Blocking waits
	// for it).
	attempted chan struct{}

	mu       sync.Mutex
	plans    *lru.Cache[uint64, *Plan]
	inflight map[uint64]bool
	stats    Stats
	warned   map[string]bool // warnings already logged (one line per kind and table)
}

// ParseURL reads the inspection connection's connection string (a
// postgres:// URL or keyword/value pairs, as libpq reads them). Its error
// never repeats the string, which may hold a password.
func ParseURL(s string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(s)
	if err != nil {
		var pe *pgconn.ParseConfigError
		if errors.As(err, &pe) {
			bare := *pe
			bare.ConnString = ""
			return nil, fmt.Errorf("not a connection string (%s); want postgres://USER@HOST:5432/DATABASE or host=HOST user=USER dbname=DATABASE (the value is not shown)",
				trimParsePrefix(bare.Error()))
		}
		return nil, errors.New("not a connection string; want postgres://USER@HOST:5432/DATABASE or host=HOST user=USER dbname=DATABASE (the value is not shown)")
	}
	return cfg, nil
}

func trimParsePrefix(s string) string {
	const p = "cannot parse ``: "
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}

// New returns an Inspector; Run connects and serves.
func New(opts Options) (*Inspector, error) {
	if opts.Config == nil {
		return nil, errors.New("inspect: no connection configuration")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.StatementTimeout <= 0 {
		opts.StatementTimeout = DefaultStatementTimeout
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.MaxPlans <= 0 {
		opts.MaxPlans = DefaultMaxPlans
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cfg := opts.Config.Copy()
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	// Belt and braces: every transaction of the session is read-only
	// unless it says otherwise, and none does; no statement cache, so
	// nothing stays prepared on the server.
	cfg.RuntimeParams["default_transaction_read_only"] = "on"
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "nplus1-inspect"
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	cfg.StatementCacheCapacity = 0
	cfg.DescriptionCacheCapacity = 0
	opts.Config = cfg
	return &Inspector{
		opts:      opts,
		log:       opts.Logger,
		target:    net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))),
		queue:     make(chan detector.InspectionRequest, opts.QueueSize),
		results:   make(chan detector.Inspection, opts.QueueSize),
		plans:     lru.New[uint64, *Plan](opts.MaxPlans, maxCachedBytes, nil),
		inflight:  make(map[uint64]bool),
		warned:    make(map[string]bool),
		attempted: make(chan struct{}),
	}, nil
}

// Target names the inspected server as host:port (never the password).
func (in *Inspector) Target() string { return in.target }

// Inspect answers r from the cache (ok true) or queues it for Run and
// returns at once; the answer then comes on Results. It never blocks.
func (in *Inspector) Inspect(r detector.InspectionRequest) (detector.Inspection, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if p, ok := in.plans.Get(r.Fingerprint); ok && in.opts.Now().Sub(p.TakenAt) < p.ttl {
		in.stats.Cached++
		return p.inspection, true
	}
	if in.inflight[r.Fingerprint] {
		return detector.Inspection{}, false
	}
	select {
	case in.queue <- r:
		in.inflight[r.Fingerprint] = true
	default:
		in.stats.Dropped++
	}
	return detector.Inspection{}, false
}

// Results delivers the answers of queued requests.
func (in *Inspector) Results() <-chan detector.Inspection { return in.results }

// Plan returns the latest plan taken of fingerprint id, for the HTTP API.
func (in *Inspector) Plan(id uint64) (*Plan, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.plans.Peek(id)
}

// Stats returns a copy of the counters.
func (in *Inspector) Stats() Stats {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.stats
}

// Run connects and serves queued requests until ctx is done, reconnecting
// with backoff when the connection fails.
func (in *Inspector) Run(ctx context.Context) {
	backoff := time.Second
	lastReason := ""
	var once sync.Once
	defer once.Do(func() { close(in.attempted) })
	for ctx.Err() == nil {
		conn, err := pgx.ConnectConfig(ctx, in.opts.Config)
		if err == nil {
			in.setConnected(true)
		}
		once.Do(func() { close(in.attempted) })
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			reason := connectReason(err)
			if reason != lastReason {
				// One line per kind of failure, not one per attempt.
				in.log.Warn("inspection connection failed; the proxy relays on, without missing_index",
					"server", in.target, "user", in.opts.Config.User, "database", in.opts.Config.Database,
					"reason", reason, "retry_in", backoff)
				lastReason = reason
			}
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff, lastReason = time.Second, ""
		in.setConnected(true)
		in.log.Info("inspection connection ready", "server", in.target, "user", in.opts.Config.User,
			"database", in.opts.Config.Database, "server_version", conn.PgConn().ParameterStatus("server_version"))
		err = in.serve(ctx, conn)
		in.setConnected(false)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		conn.Close(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		in.log.Warn("inspection connection lost; reconnecting", "server", in.target, "reason", connectReason(err))
	}
}

func (in *Inspector) setConnected(up bool) {
	in.mu.Lock()
	in.stats.Connected = up
	in.mu.Unlock()
}

// serve runs queued requests on conn, one per Interval, until ctx is done
// (nil) or the connection fails (its error).
func (in *Inspector) serve(ctx context.Context, conn *pgx.Conn) error {
	version := serverVersion(conn)
	tables := lru.New[string, *tableEntry](256, 0, nil)
	var last time.Time
	for {
		var r detector.InspectionRequest
		select {
		case <-ctx.Done():
			return nil
		case r = <-in.queue:
		}
		if wait := in.opts.Interval - time.Since(last); wait > 0 && !sleep(ctx, wait) {
			return nil
		}
		last = time.Now()
		p := in.inspect(ctx, conn, version, tables, r)
		if conn.IsClosed() {
			in.forget(r.Fingerprint)
			return errors.New("connection closed")
		}
		in.store(p)
		select {
		case in.results <- p.inspection:
		default:
			in.mu.Lock()
			in.stats.Lost++
			in.mu.Unlock()
		}
	}
}

// forget lets r be asked again (the connection failed while it ran).
func (in *Inspector) forget(id uint64) {
	in.mu.Lock()
	delete(in.inflight, id)
	in.mu.Unlock()
}

// store caches p and counts it.
func (in *Inspector) store(p *Plan) {
	in.mu.Lock()
	defer in.mu.Unlock()
	delete(in.inflight, p.id)
	in.stats.Inspected++
	p.ttl = in.opts.TTL
	if p.Error != "" {
		in.stats.Failed++
		p.ttl = min(failedTTL, in.opts.TTL)
	}
	in.plans.Add(p.id, p, len(p.Plan)+len(p.Query)+256)
}

// warnOnce logs msg once per key for the life of the Inspector (bounded).
func (in *Inspector) warnOnce(key, msg string, args ...any) {
	in.mu.Lock()
	seen := in.warned[key]
	if !seen && len(in.warned) < 1024 {
		in.warned[key] = true
	}
	in.mu.Unlock()
	if !seen {
		in.log.Warn(msg, args...)
	}
}

// sleep waits d or until ctx is done; false when ctx is done.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// serverVersion is the server's server_version_num, e.g. 150018.
func serverVersion(conn *pgx.Conn) int {
	v := conn.PgConn().ParameterStatus("server_version")
	major, rest, _ := cutNumber(v)
	minor, _, _ := cutNumber(rest)
	if major >= 10 {
		return major*10000 + minor
	}
	return major * 10000
}

// cutNumber reads the decimal number at the start of s and skips one
// separator after it.
func cutNumber(s string) (int, string, bool) {
	n, i := 0, 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		n = n*10 + int(s[i]-'0')
		i++
	}
	if i < len(s) {
		i++
	}
	return n, s[i:], i > 0
}
