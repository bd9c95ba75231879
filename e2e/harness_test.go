// Package e2e tests detection end to end: real clients (pgx, pgxpool,
// database/sql with the pgx driver, GORM, and Node's pg and Sequelize) talk to
// a real PostgreSQL through the real proxy, whose executions feed the real
// analyzer; each case runs one code path, N+1 or fixed, and is judged by the
// findings it made. corpus_test.go runs the whole corpus and measures
// precision and recall.
//
// One throwaway PostgreSQL, one proxy and one analyzer serve the whole
// package (TestMain); cases run one at a time, because the findings of a case
// are those the analyzer made while it ran (and, for a case that connects
// with an application_name of its own, those of that name: corpusCase.App).
// The analyzer has an inspection connection, as with --inspect-url
// (inspection_test.go), and a case is judged once its inspections are
// answered.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nplus1/nplus1/analyzer"
	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/internal/pgtest"
	"github.com/nplus1/nplus1/internal/shop"
	"github.com/nplus1/nplus1/pgwire"
	"github.com/nplus1/nplus1/proxy"
	"go.uber.org/goleak"
)

// extraSchema adds what the corpus needs beyond the shop: a table that loops
// of writes go to.
const extraSchema = `
DROP TABLE IF EXISTS audit_log;
CREATE TABLE audit_log (id bigserial PRIMARY KEY, order_id bigint NOT NULL, note text NOT NULL);
`

// settleMin is how long the harness waits after a case before it starts
// asking whether every window has closed: long enough for the case's last
// executions to be queued for the analyzer (microseconds) and for the window
// to close (idle gap 100ms + lag 250ms + tick 10ms), so that usually one look
// suffices.
const settleMin = 370 * time.Millisecond

// analyzerLag is the analyzer's Lag: the proxy's default, so that a busy
// test run (the race detector, a loaded CI machine) cannot close a window
// before its executions have left the queue.
const analyzerLag = 250 * time.Millisecond

// settleMax bounds the wait for windows to close under a loaded machine.
const settleMax = 15 * time.Second

// harness is the package's world: PostgreSQL, the proxy in front of it and
// the analyzer behind it. Executions go from the proxy to a tap, which notes
// them for the running case, then to the analyzer.
type harness struct {
	pg        *pgtest.Server
	proxyAddr string                 // host:port of the proxy
	fromProxy chan *pgwire.Execution // proxy → tap; never closed
	events    chan *pgwire.Execution // tap → analyzer; never closed
	store     *analyzer.Store
	an        *analyzer.Analyzer
	insp      *inspections // the inspection connection (inspection_test.go)

	mu sync.Mutex // held by runCase: one case at a time

	recMu sync.Mutex
	rec   []*pgwire.Execution // guarded by recMu; the running case's executions
}

// h is set by TestMain before any test runs.
var h *harness

func TestMain(m *testing.M) {
	os.Exit(mainRun(m))
}

func mainRun(m *testing.M) int {
	hh, stop, err := startHarness()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	h = hh
	code := m.Run()
	stop()
	if code == 0 {
		// Every client a case opened was closed, and the harness waited for
		// its own goroutines.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: goroutines left behind:", err)
			return 1
		}
	}
	return code
}

// startHarness starts PostgreSQL, loads the schema, and starts the proxy and
// the analyzer; stop undoes it all and waits for every goroutine it started.
func startHarness() (*harness, func(), error) {
	pg, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The schema goes in directly, not through the proxy: the analyzer sees
	// only the cases.
	c, err := pgx.Connect(ctx, pg.URL(pgtest.Superuser))
	if err != nil {
		pg.Stop()
		return nil, nil, fmt.Errorf("connect for setup: %w", err)
	}
	if err := shop.Load(ctx, c); err != nil {
		c.Close(ctx)
		pg.Stop()
		return nil, nil, fmt.Errorf("load shop schema: %w", err)
	}
	if _, err := c.Exec(ctx, extraSchema); err != nil {
		c.Close(ctx)
		pg.Stop()
		return nil, nil, fmt.Errorf("load extra schema: %w", err)
	}
	if err := loadInspectionSchema(ctx, c); err != nil {
		c.Close(ctx)
		pg.Stop()
		return nil, nil, err
	}
	c.Close(ctx)
	insp, stopInspections, err := startInspections(pg)
	if err != nil {
		pg.Stop()
		return nil, nil, err
	}
	if err := waitInspectorConnected(insp, 30*time.Second); err != nil {
		stopInspections()
		pg.Stop()
		return nil, nil, err
	}

	fromProxy := make(chan *pgwire.Execution, 100000)
	events := make(chan *pgwire.Execution, 100000)
	budget := pgwire.NewEvidenceBudget(pgwire.DefaultEvidenceBudgetBytes)
	p, err := proxy.New(proxy.Config{Upstream: pg.Addr(), Events: fromProxy, Evidence: true, EvidenceBudget: budget})
	if err != nil {
		stopInspections()
		pg.Stop()
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		stopInspections()
		pg.Stop()
		return nil, nil, err
	}
	served := make(chan struct{})
	go func() { _ = p.Serve(ln); close(served) }()

	store := analyzer.NewStore(100000)
	an := analyzer.New(analyzer.Config{
		Sinks:          []analyzer.Sink{store},
		Tick:           10 * time.Millisecond,
		Lag:            analyzerLag,
		EvidenceBudget: budget,
		Detector:       detector.Config{Inspect: true},
		Inspector:      insp,
	})
	hh := &harness{pg: pg, proxyAddr: ln.Addr().String(), fromProxy: fromProxy, events: events, store: store, an: an, insp: insp}
	actx, astop := context.WithCancel(context.Background())
	tapped := make(chan struct{})
	go func() { hh.tap(actx); close(tapped) }()
	analyzed := make(chan struct{})
	go func() { an.Run(actx, events); close(analyzed) }()

	stop := func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = p.Shutdown(sctx)
		scancel()
		<-served
		astop()
		<-tapped
		<-analyzed
		stopInspections()
		pg.Stop()
	}
	return hh, stop, nil
}

// tap notes each execution for the running case and hands it on to the
// analyzer, until ctx is done.
func (hh *harness) tap(ctx context.Context) {
	for {
		select {
		case e := <-hh.fromProxy:
			hh.recMu.Lock()
			hh.rec = append(hh.rec, e)
			hh.recMu.Unlock()
			hh.events <- e // buffered far beyond any case
		case <-ctx.Done():
			return
		}
	}
}

// takeRecorded returns the executions noted since the last call.
func (hh *harness) takeRecorded() []*pgwire.Execution {
	hh.recMu.Lock()
	defer hh.recMu.Unlock()
	r := hh.rec
	hh.rec = nil
	return r
}

// maxGap is the longest time one connection spent between the end of a
// statement and the start of its next one: what the detector's idle gap is
// measured against.
func maxGap(es []*pgwire.Execution) time.Duration {
	byConn := map[uint64][]*pgwire.Execution{}
	for _, e := range es {
		byConn[e.Conn.ID] = append(byConn[e.Conn.ID], e)
	}
	var longest time.Duration
	for _, xs := range byConn {
		slices.SortStableFunc(xs, func(a, b *pgwire.Execution) int { return a.Start.Compare(b.Start) })
		end := xs[0].End
		for _, e := range xs[1:] {
			longest = max(longest, e.Start.Sub(end))
			if e.End.After(end) {
				end = e.End
			}
		}
	}
	return longest
}

// url is a connection URL for the proxy, with extra query parameters
// ("application_name=x"); sslmode=disable unless extra says otherwise.
func (hh *harness) url(extra ...string) string {
	return pgtest.URLFor(hh.proxyAddr, pgtest.Superuser, extra...)
}

// nodeURL is the proxy's URL in the plain form Node's clients take.
func (hh *harness) nodeURL() string {
	return fmt.Sprintf("postgres://%s@%s/%s", pgtest.Superuser, hh.proxyAddr, pgtest.Database)
}

// settle waits until the case's executions have reached the analyzer,
// every window has closed and every inspection the closed windows asked for
// was answered (so every finding of the case is made).
// It first sleeps minWait.
func (hh *harness) settle(t testing.TB, minWait time.Duration) {
	t.Helper()
	time.Sleep(minWait)
	defer hh.insp.report(t)
	deadline := time.Now().Add(settleMax)
	for {
		queued := len(hh.fromProxy) + len(hh.events)
		if st := hh.an.Stats(); queued == 0 && st.WindowsOpen == 0 && st.WindowsHeld == 0 && hh.inspectionsSettled(t) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("windows still open or inspections unanswered %s after the case ended (%d events queued)", minWait+settleMax, queued)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runCase runs one code path through the proxy and returns the findings the
// analyzer made during it. Cooldowns and select_star's memory are reset
// first, so that a pattern an earlier case showed is reported again.
func runCase(t *testing.T, name string, fn func(ctx context.Context) error) []detector.Finding {
	t.Helper()
	fs, _ := runCaseGap(t, name, fn)
	return fs
}

// runCaseGap is runCase that also returns the case's maxGap: when a code path
// that never pauses shows a gap longer than the detector's idle gap, the
// machine stalled (CPU starvation under a parallel test run), and the
// detector, as designed, judged the halves apart.
func runCaseGap(t *testing.T, name string, fn func(ctx context.Context) error) ([]detector.Finding, time.Duration) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.settle(t, 0)
	h.an.ResetReported()
	h.takeRecorded()
	before := len(h.store.List("", time.Time{}))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := fn(ctx); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	h.settle(t, settleMin)
	fs := h.store.List("", time.Time{})[before:]
	execs := h.takeRecorded()
	gap := maxGap(execs)
	conns := map[uint64]bool{}
	for _, e := range execs {
		conns[e.Conn.ID] = true
	}
	t.Logf("%s: %d executions on %d connections, longest gap on one connection %s", name, len(execs), len(conns), gap.Round(time.Millisecond))
	for _, f := range fs {
		src := ""
		if f.Source != nil {
			src = fmt.Sprintf(" source=%q rows=%d", f.Source.Query, f.Source.Rows)
		}
		if b, err := json.Marshal(f); err == nil {
			var v struct {
				Evidence json.RawMessage `json:"evidence"`
			}
			if json.Unmarshal(b, &v) == nil && len(v.Evidence) > 0 {
				src += " evidence=" + string(v.Evidence)
			}
		}
		t.Logf("%s: %s %s app=%q conn=%d count=%d distinct=%d rows=%d query=%q%s", name, f.Kind, f.Severity, f.ApplicationName, f.Connection.ID, f.Count, f.DistinctParams, f.Rows, f.Query, src)
	}
	return fs, gap
}

// tableOf is the finding's first table without schema or quotes.
func tableOf(f detector.Finding) string {
	if len(f.Tables) == 0 {
		return ""
	}
	return bareTable(f.Tables[0])
}

func bareTable(s string) string {
	s = strings.ReplaceAll(s, `"`, "")
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
