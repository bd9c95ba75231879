package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nplus1/nplus1/analyzer"
	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/inspect"
	"github.com/nplus1/nplus1/internal/pgtest"
)

// The corpus runs with an inspection connection, as `nplus1 proxy
// --inspect-url` does: the analyzer's detector has the missing_index rule on,
// and the real inspector (package inspect) reads the catalogs and generic
// plans of the hot query shapes through a connection of its own, straight to
// PostgreSQL, never through the proxy (the analyzer does not see it).
//
// Its role is the one the README advises, with exactly its grants: it can
// connect and read the tables, nothing more, and every transaction of it is
// read-only. pgtest.UserSCRAM plays it (the test server's pg_hba lets only
// its own roles in).
var inspectionGrants = fmt.Sprintf(`
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON DATABASE %[1]s FROM PUBLIC, %[2]s;
ALTER ROLE %[2]s SET default_transaction_read_only = on;
GRANT CONNECT ON DATABASE %[1]s TO %[2]s;
GRANT USAGE ON SCHEMA public TO %[2]s;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO %[2]s;
`, pgtest.Database, pgtest.UserSCRAM)

// barrierApp is an application_name no case uses: a flush scoped to it
// closes no window and serves as a barrier through the analyzer's loop.
const barrierApp = "nplus1-e2e-barrier"

// inspections is the analyzer's Inspector in the harness: the real
// inspector, with a count of the requests whose answer the analyzer has not
// taken yet. Inspection answers come asynchronously (at most 4 a second,
// cached per fingerprint), so a case is judged only once every inspection it
// asked for was answered and fed to the detector (harness.settle).
type inspections struct {
	in *inspect.Inspector
	// out carries the inspector's answers to the analyzer; unbuffered, so
	// a send returns once the analyzer's loop has taken the answer.
	out chan detector.Inspection

	mu      sync.Mutex
	waiting map[uint64]bool // queued requests whose answer the analyzer has not taken
	// Counts since the last report: requests answered from the cache,
	// queued, dropped because the inspector's queue was full, and the
	// answers the analyzer took; the inspections that failed.
	cached, queued, dropped, answers int
	failed                           []string
}

// startInspections makes the inspector on the server's inspection role and
// runs it and the forwarding of its answers until stop.
func startInspections(pg *pgtest.Server) (*inspections, func(), error) {
	cfg, err := inspect.ParseURL(pg.URL(pgtest.UserSCRAM))
	if err != nil {
		return nil, nil, err
	}
	in, err := inspect.New(inspect.Options{Config: cfg})
	if err != nil {
		return nil, nil, err
	}
	s := &inspections{in: in, out: make(chan detector.Inspection), waiting: map[uint64]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); in.Run(ctx) }()
	go func() { defer wg.Done(); s.forward(ctx) }()
	return s, func() { cancel(); wg.Wait() }, nil
}

// Inspect is the inspector's Inspect, noting what it queued or dropped. The
// analyzer calls it on its own goroutine only, so the change of the
// inspector's drop count is this request's.
func (s *inspections) Inspect(r detector.InspectionRequest) (detector.Inspection, bool) {
	before := s.in.Stats().Dropped
	ins, ok := s.in.Inspect(r)
	dropped := !ok && s.in.Stats().Dropped > before
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case ok:
		s.cached++
	case dropped:
		s.dropped++
	default:
		s.queued++
		s.waiting[r.Fingerprint] = true
	}
	return ins, ok
}

// Results is where the analyzer takes the answers.
func (s *inspections) Results() <-chan detector.Inspection { return s.out }

// forward hands each answer of the inspector to the analyzer, and forgets
// its request once the analyzer has taken it.
func (s *inspections) forward(ctx context.Context) {
	for {
		var ins detector.Inspection
		select {
		case ins = <-s.in.Results():
		case <-ctx.Done():
			return
		}
		select {
		case s.out <- ins:
		case <-ctx.Done():
			return
		}
		s.mu.Lock()
		delete(s.waiting, ins.Fingerprint)
		s.answers++
		if ins.Err != "" {
			s.failed = append(s.failed, fmt.Sprintf("%016x: %s", ins.Fingerprint, ins.Err))
		}
		s.mu.Unlock()
	}
}

// answered reports whether the analyzer has taken the answer of every
// request the inspector queued.
func (s *inspections) answered() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.waiting) == 0
}

// report logs what was asked of the inspector since the last call and the
// inspections that failed, and fails t for the requests dropped: a dropped
// request leaves its shape uninspected, and the case's result would depend
// on the queue.
func (s *inspections) report(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	cached, queued, dropped, answers, failed := s.cached, s.queued, s.dropped, s.answers, s.failed
	s.cached, s.queued, s.dropped, s.answers, s.failed = 0, 0, 0, 0, nil
	s.mu.Unlock()
	if cached+queued+dropped+answers > 0 {
		t.Logf("inspection connection: %d shapes answered from the cache, %d queued, %d answers taken", cached, queued, answers)
	}
	for _, f := range failed {
		t.Logf("inspection failed (no missing_index can come of it): %s", f)
	}
	if dropped > 0 {
		t.Errorf("the inspector's queue dropped %d requests", dropped)
	}
}

// inspectionsSettled reports whether every inspection asked for so far was
// answered and its answer fed to the detector: after the analyzer has taken
// every answer, a flush that closes nothing passes through its loop, which
// takes the flush only once it has fed the last answer it took.
func (hh *harness) inspectionsSettled(t testing.TB) bool {
	t.Helper()
	if !hh.insp.answered() {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), settleMax)
	defer cancel()
	if _, err := hh.an.FlushWhere(ctx, 0, analyzer.Filter{Application: barrierApp}); err != nil {
		t.Fatalf("barrier through the analyzer: %v", err)
	}
	// The flush asks the inspector for what the detector wants; usually
	// nothing.
	return hh.insp.answered()
}

// loadInspectionSchema loads the missing_index cases' tables and gives the
// inspection role its grants (after every table exists: SELECT ON ALL
// TABLES is granted on the tables there are).
func loadInspectionSchema(ctx context.Context, c *pgx.Conn) error {
	if _, err := c.Exec(ctx, missingIndexSchema); err != nil {
		return fmt.Errorf("load missing_index schema: %w", err)
	}
	if _, err := c.Exec(ctx, inspectionGrants); err != nil {
		return fmt.Errorf("inspection role's grants: %w", err)
	}
	return nil
}

// waitInspectorConnected waits until the inspector's connection is up, so
// that the first case's requests are not left to the reconnection backoff.
func waitInspectorConnected(s *inspections, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !s.in.Stats().Connected {
		if time.Now().After(deadline) {
			return fmt.Errorf("the inspection connection is not up after %s", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}
