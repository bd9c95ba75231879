package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/nplus1/nplus1/analyzer"
	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/internal/valuekey"
	"github.com/nplus1/nplus1/pgwire"
)

// Defaults and bounds of re-execution.
const (
	// DefaultMaxSessions bounds the target connections open at once; the
	// replay waits for one to close before it opens more.
	DefaultMaxSessions = 100
	// sessionQueue bounds the statements queued per connection ahead of
	// their time.
	sessionQueue = 256
	// sessionIdleClose closes a target connection whose recorded connection
	// has had nothing to run for this long (wall time); a later statement of
	// it opens a new one.
	sessionIdleClose = 5 * time.Second
	// maxReexecParams is the protocol's limit on bound parameters.
	maxReexecParams = 65535
)

// Reasons a statement is not re-executed (ReexecResult.Skipped keys).
const (
	SkipWrite      = "statements that may write (--allow-writes runs them)"
	SkipNoSQL      = "statements whose text the input does not hold"
	SkipNoParams   = "statements whose parameter values the input does not hold"
	SkipConnFailed = "statements not run because the target connection failed"
)

// ReexecConfig configures Reexecute.
type ReexecConfig struct {
	// Target is the database, as a postgres:// URL or key=value string; its
	// user and database are used for every connection.
	Target string
	// Speed scales the pace: 2 runs twice as fast as recorded, 0.5 half as
	// fast (1 when 0).
	Speed float64
	// MaxIdle shortens longer pauses in the input to it (10s when 0).
	MaxIdle time.Duration
	// AllowWrites runs statements that may write; without it they are
	// skipped and the sessions are read-only.
	AllowWrites bool
	// MaxSessions bounds concurrent target connections (DefaultMaxSessions).
	MaxSessions int
	// Analyzer configures the analysis of what the target answered.
	Analyzer analyzer.Config
	// Statements counts statements re-executed, for progress.
	Statements *atomic.Int64
	// Logger receives connection failures (nil discards).
	Logger *slog.Logger
}

// ReexecResult is what a re-execution produced.
type ReexecResult struct {
	// Summary aggregates the target's answers per fingerprint: latency and
	// errors as the target saw them.
	Summary *Summary
	// Skipped counts statements not re-executed, by reason.
	Skipped map[string]int64
}

// Reexecute runs the statements of src against the target, one target
// connection per recorded connection, in the recorded order and at the
// recorded offsets (scaled by Speed, pauses capped at MaxIdle), and analyzes
// what the target answered. It returns when every statement has run or ctx
// is done.
func Reexecute(ctx context.Context, src Source, cfg ReexecConfig) (*ReexecResult, error) {
	if cfg.Speed <= 0 {
		cfg.Speed = 1
	}
	if cfg.MaxIdle <= 0 {
		cfg.MaxIdle = 10 * time.Second
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Analyzer.Fingerprints == nil {
		cfg.Analyzer.Fingerprints = fingerprint.New(fingerprint.Options{})
	}
	pgcfg, err := pgconn.ParseConfig(cfg.Target)
	if err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	if !cfg.AllowWrites {
		pgcfg.RuntimeParams["default_transaction_read_only"] = "on"
	}
	if pgcfg.RuntimeParams["application_name"] == "" {
		pgcfg.RuntimeParams["application_name"] = "nplus1 replay"
	}
	// Fail early, with a clear error, when the target cannot be reached.
	probe, err := pgconn.ConnectConfig(ctx, pgcfg)
	if err != nil {
		return nil, fmt.Errorf("connect to target: %w", err)
	}
	probe.Close(ctx)

	r := &reexec{
		cfg:      cfg,
		pgcfg:    pgcfg,
		fp:       cfg.Analyzer.Fingerprints,
		sum:      NewSummary(0),
		results:  make(chan *pgwire.Execution, 1024),
		sessions: make(map[uint64]*session),
		slots:    make(chan struct{}, cfg.MaxSessions),
		skipped:  make(map[string]int64),
		finished: make(chan struct{}),
	}
	acfg := cfg.Analyzer
	acfg.Sinks = append(append([]analyzer.Sink(nil), acfg.Sinks...), analyzer.SinkFunc(r.sum.finding))
	an := analyzer.New(acfg)

	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		r.consume(an)
	}()
	rerr := r.dispatch(ctx, src)
	close(r.finished)
	r.wg.Wait() // every session has finished its queue
	close(r.results)
	<-consumed
	an.Flush()
	r.sum.finish(an.Stats())
	if rerr == nil {
		rerr = ctx.Err()
	}
	return &ReexecResult{Summary: r.sum, Skipped: r.skipped}, rerr
}

type reexec struct {
	cfg   ReexecConfig
	pgcfg *pgconn.Config
	fp    *fingerprint.Cache
	sum   *Summary // owned by consume until it returns

	results chan *pgwire.Execution // sessions → consume

	// mu guards sessions; dispatch holds it while it queues a job, so that
	// a session never closes with a job just queued.
	mu       sync.Mutex
	sessions map[uint64]*session // by recorded connection id
	smu      sync.Mutex          // guards skipped
	skipped  map[string]int64
	slots    chan struct{} // one per open session
	wg       sync.WaitGroup
	finished chan struct{} // closed when dispatch is over: sessions drain and stop

	// The schedule, owned by dispatch.
	started bool
	orig0   time.Time // first statement's recorded start
	last    time.Time // latest recorded start so far
	shift   time.Duration
	wall0   time.Time
}

// consume analyzes the target's answers as they come, on the wall clock,
// as the live proxy's analyzer does.
func (r *reexec) consume(an *analyzer.Analyzer) {
	tick := time.NewTicker(DefaultTick)
	defer tick.Stop()
	for {
		select {
		case e, ok := <-r.results:
			if !ok {
				return
			}
			an.Process(e)
			r.sum.add(e, r.fp)
			if r.cfg.Statements != nil {
				r.cfg.Statements.Add(1)
			}
		case <-tick.C:
			if len(r.results) == 0 {
				an.Advance(time.Now().Add(-DefaultLag))
			}
		}
	}
}

func (r *reexec) skip(reason string) {
	r.smu.Lock()
	r.skipped[reason]++
	r.smu.Unlock()
}

// dispatch reads the source and queues each statement on its connection's
// session, with the wall time it is due.
func (r *reexec) dispatch(ctx context.Context, src Source) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, err := src.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if e.Protocol == "simple" && e.StatementIndex > 0 {
			continue // ran with statement 0: the whole text is one Query
		}
		switch {
		case e.SQL == "":
			r.skip(SkipNoSQL)
			continue
		case e.ParamsTruncated || (e.NumParams > 0 && len(e.Params) != e.NumParams) || len(e.Params) > maxReexecParams:
			r.skip(SkipNoParams)
			continue
		case !r.cfg.AllowWrites && !readOnlyEither(r.fp, e.SQL):
			r.skip(SkipWrite)
			continue
		}
		if err := r.queue(ctx, job{e: e, due: r.due(e.Start)}); err != nil {
			return err
		}
	}
}

// readOnlyEither reports whether a text is ReadOnly however its target
// session reads backslashes in '...' strings: the target's
// standard_conforming_strings need not be the recorded session's, and a
// text can be one harmless string constant under one setting and a write
// under the other: a string holding a backslash, a quote and a DELETE.
func readOnlyEither(fp *fingerprint.Cache, sql string) bool {
	return ReadOnly(fp.OfStrings(sql, fingerprint.StringsStandard)) && ReadOnly(fp.OfStrings(sql, fingerprint.StringsEscape))
}

// due maps a recorded start time to the wall time it runs at.
func (r *reexec) due(orig time.Time) time.Time {
	if !r.started {
		r.started, r.orig0, r.last, r.wall0 = true, orig, orig, time.Now()
	}
	if gap := orig.Sub(r.last); gap > r.cfg.MaxIdle {
		r.shift += gap - r.cfg.MaxIdle
	}
	if orig.After(r.last) {
		r.last = orig
	}
	off := orig.Sub(r.orig0) - r.shift
	return r.wall0.Add(time.Duration(float64(max(off, 0)) / r.cfg.Speed))
}

// queue hands j to the session of its recorded connection, starting one
// (after waiting for a free slot) when there is none. Sending under r.mu
// can block only on a full queue, whose session is running and needs no
// lock to drain it.
func (r *reexec) queue(ctx context.Context, j job) error {
	c := j.e.Conn
	r.mu.Lock()
	s := r.sessions[c.ID]
	if s == nil {
		r.mu.Unlock()
		select {
		case r.slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		s = &session{r: r, conn: c, queue: make(chan job, sessionQueue)}
		r.wg.Go(func() {
			defer func() { <-r.slots }()
			s.run(ctx)
		})
		r.mu.Lock()
		r.sessions[c.ID] = s
	}
	defer r.mu.Unlock()
	select {
	case s.queue <- j:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type job struct {
	e   *pgwire.Execution
	due time.Time
}

// session runs one recorded connection's statements on a target connection
// of its own, in order.
type session struct {
	r      *reexec
	conn   *pgwire.ConnInfo
	queue  chan job // never closed; the session stops when idle
	pg     *pgconn.PgConn
	failed bool // the connection failed: skip the rest of the queue
	// strs is the target session's standard_conforming_strings when the
	// statement being run was sent: the target parses a simple Query whole,
	// and a Parse, Bind, Execute, Sync, before anything of it runs.
	strs pgwire.StandardStrings
}

func (s *session) run(ctx context.Context) {
	defer func() {
		if s.pg != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			s.pg.Close(cctx)
			cancel()
		}
	}()
	idle := time.NewTimer(sessionIdleClose)
	defer idle.Stop()
	for {
		select {
		case j := <-s.queue:
			s.do(ctx, j)
			idle.Reset(sessionIdleClose)
		case <-idle.C:
			s.r.mu.Lock()
			if len(s.queue) > 0 { // queued just now
				s.r.mu.Unlock()
				idle.Reset(sessionIdleClose)
				continue
			}
			if s.r.sessions[s.conn.ID] == s {
				delete(s.r.sessions, s.conn.ID)
			}
			s.r.mu.Unlock()
			return
		case <-s.r.finished:
			for {
				select {
				case j := <-s.queue:
					s.do(ctx, j)
				default:
					return
				}
			}
		case <-ctx.Done():
			return
		}
	}
}

func (s *session) do(ctx context.Context, j job) {
	if wait := time.Until(j.due); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
	if s.failed {
		s.r.skip(SkipConnFailed)
		return
	}
	if s.pg == nil {
		pg, err := pgconn.ConnectConfig(ctx, s.r.pgcfg)
		if err != nil {
			s.failed = true
			s.r.cfg.Logger.Warn("target connection failed", "conn", s.conn.ID, "err", err)
			s.r.skip(SkipConnFailed)
			return
		}
		s.pg = pg
	}
	e := j.e
	s.strs = targetStrings(s.pg)
	if e.Protocol == "simple" {
		s.simple(ctx, e)
		return
	}
	formats := e.ParamFormats
	if len(formats) > 1 && len(formats) != len(e.Params) {
		formats = formats[:1] // malformed: the server would have refused it too
	}
	start := time.Now()
	res := s.pg.ExecParams(ctx, e.SQL, e.Params, nil, formats, nil).Read()
	x := s.emit(e, e.StatementIndex, start, time.Now(), res.CommandTag, res.Err)
	if x != nil {
		x.ParamKeys = paramKeys(e.Params, formats)
		x.Result = resultKeys(res.FieldDescriptions, res.Rows)
		s.r.results <- x
	}
}

// Bounds of the value evidence of a re-executed statement: as the live
// tracker's defaults.
const (
	reexecEvidenceRows    = 256
	reexecEvidenceColumns = 16
)

// paramKeys are the digests of bound values (formats as in a Bind: none
// means text, one applies to all).
func paramKeys(values [][]byte, formats []int16) []valuekey.Key {
	if len(values) == 0 {
		return nil
	}
	keys := make([]valuekey.Key, len(values))
	for i, v := range values {
		f := int16(0)
		switch {
		case len(formats) == 1:
			f = formats[0]
		case i < len(formats):
			f = formats[i]
		}
		switch {
		case v == nil:
		case f == 1:
			keys[i] = valuekey.Binary(v, 0)
		default:
			keys[i] = valuekey.Text(v)
		}
	}
	return keys
}

// resultKeys are the digests of a result's first rows and columns.
func resultKeys(fields []pgconn.FieldDescription, rows [][][]byte) *pgwire.ResultKeys {
	if len(fields) == 0 || len(rows) == 0 {
		return nil
	}
	truncated := len(fields) > reexecEvidenceColumns || len(rows) > reexecEvidenceRows
	fields = fields[:min(len(fields), reexecEvidenceColumns)]
	rows = rows[:min(len(rows), reexecEvidenceRows)]
	names := make([]string, len(fields))
	keys := make([]valuekey.Key, len(fields)*len(rows)) // column after column
	for c, fd := range fields {
		names[c] = fd.Name
		col := keys[c*len(rows) : (c+1)*len(rows)]
		for i, row := range rows {
			if c >= len(row) || row[c] == nil {
				continue
			}
			if fd.Format == 1 {
				col[i] = valuekey.Binary(row[c], fd.DataTypeOID)
			} else {
				col[i] = valuekey.Text(row[c])
			}
		}
	}
	return pgwire.ResultKeysOf(names, len(rows), keys, truncated)
}

// simple runs a simple-protocol text and reports each of its statements.
func (s *session) simple(ctx context.Context, e *pgwire.Execution) {
	start := time.Now()
	mrr := s.pg.Exec(ctx, e.SQL)
	i := 0
	reported := false
	for mrr.NextResult() {
		rr := mrr.ResultReader()
		var rows [][][]byte
		for rr.NextRow() {
			if len(rows) < reexecEvidenceRows {
				vals := rr.Values()
				row := make([][]byte, len(vals))
				for c, v := range vals {
					if v != nil {
						row[c] = append([]byte{}, v...)
					}
				}
				rows = append(rows, row)
			}
		}
		tag, err := rr.Close()
		end := time.Now()
		if x := s.emit(e, i, start, end, tag, err); x != nil {
			x.Result = resultKeys(rr.FieldDescriptions(), rows)
			s.r.results <- x
		}
		reported = reported || err != nil
		start = end
		i++
	}
	if err := mrr.Close(); err != nil && !reported {
		// An error before any result of its statement (a syntax error).
		if x := s.emit(e, i, start, time.Now(), pgconn.CommandTag{}, err); x != nil {
			s.r.results <- x
		}
	}
}

// targetStrings is the target session's standard_conforming_strings as its
// server last reported it.
func targetStrings(pg *pgconn.PgConn) pgwire.StandardStrings {
	switch pg.ParameterStatus("standard_conforming_strings") {
	case "on":
		return pgwire.StandardStringsOn
	case "off":
		return pgwire.StandardStringsOff
	}
	return pgwire.StandardStringsUnknown
}

// emit builds the execution of what the target answered, for the caller to
// complete with its evidence and hand to the analysis.
func (s *session) emit(orig *pgwire.Execution, idx int, start, end time.Time, tag pgconn.CommandTag, err error) *pgwire.Execution {
	x := &pgwire.Execution{
		Conn: orig.Conn, Start: start, End: end,
		SQL: orig.SQL, StatementIndex: idx, Truncated: orig.Truncated, StandardStrings: s.strs,
		Protocol: orig.Protocol, Prepared: orig.Prepared,
		ParamsHash: orig.ParamsHash, NumParams: orig.NumParams,
		Rows: -1, InTransaction: orig.InTransaction, TxEnd: orig.TxEnd,
	}
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			x.SQLState = pe.Code
		} else {
			x.SQLState = "08006" // connection_failure
			s.failed = true
			s.r.cfg.Logger.Warn("target connection failed", "conn", orig.Conn.ID, "err", err)
		}
	} else {
		x.Command = commandWord(tag.String())
		if tag.Select() || tag.Insert() || tag.Update() || tag.Delete() || strings.HasPrefix(tag.String(), "MERGE") ||
			strings.HasPrefix(tag.String(), "FETCH") || strings.HasPrefix(tag.String(), "COPY") || strings.HasPrefix(tag.String(), "MOVE") {
			x.Rows = tag.RowsAffected()
		}
	}
	return x
}

// commandWord is a CommandComplete tag without its counts.
func commandWord(tag string) string {
	for {
		i := strings.LastIndexByte(tag, ' ')
		if i < 0 {
			return tag
		}
		w := tag[i+1:]
		if strings.Trim(w, "0123456789") != "" {
			return tag
		}
		tag = tag[:i]
	}
}

// readOnlyUtility are the utility statements that change no data.
var readOnlyUtility = []string{"begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release",
	"set", "show", "reset", "discard", "deallocate", "listen", "unlisten", "close", "fetch", "move"}

// ReadOnly reports whether every statement of a text is known not to write:
// a SELECT that writes no table and locks no row, EXPLAIN without ANALYZE of
// one, or transaction control, SET, SHOW and the like (not those that make a
// transaction read-write). Functions called by a SELECT may still write: the
// re-execution's read-only sessions stop those.
func ReadOnly(res *fingerprint.Result) bool {
	for i := range res.Statements {
		st := &res.Statements[i]
		if st.Err != nil || st.Facts == nil {
			return false
		}
		f := st.Facts
		if len(f.TablesWritten) > 0 || f.Locking {
			return false
		}
		norm := strings.ToLower(st.Normalized)
		if strings.Contains(norm, "read write") || strings.Contains(norm, "read_only") || strings.Contains(norm, "read only") && strings.Contains(norm, "off") {
			return false
		}
		word, _, _ := strings.Cut(strings.TrimSpace(norm), " ")
		switch f.Kind {
		case fingerprint.KindSelect:
			if strings.Contains(norm, " into ") && word == "select" {
				return false // SELECT INTO creates a table
			}
		case fingerprint.KindUtility:
			ok := false
			for _, w := range readOnlyUtility {
				if word == w {
					ok = true
				}
			}
			if !ok {
				return false
			}
		case fingerprint.KindOther:
			switch word {
			case "fetch", "close", "move", "declare":
			case "explain":
				if strings.Contains(norm, "analyze") || strings.Contains(norm, "analyse") {
					return false
				}
			default:
				return false
			}
		default:
			return false
		}
	}
	return len(res.Statements) > 0
}
