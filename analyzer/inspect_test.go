package analyzer

import (
	"context"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/pgwire"
)

// fakeInspector answers every request with a Seq Scan of users on id, at
// once (cached) or later on its results channel.
type fakeInspector struct {
	cached  bool
	results chan detector.Inspection

	mu    sync.Mutex
	asked []detector.InspectionRequest
}

func (f *fakeInspector) Inspect(r detector.InspectionRequest) (detector.Inspection, bool) {
	f.mu.Lock()
	f.asked = append(f.asked, r)
	f.mu.Unlock()
	ins := detector.Inspection{Fingerprint: r.Fingerprint, Scans: []detector.ScanFacts{{Table: "users", Rows: 50_000, FilterColumns: []string{"id"}}}}
	if f.cached {
		return ins, true
	}
	f.results <- ins
	return detector.Inspection{}, false
}

func (f *fakeInspector) Results() <-chan detector.Inspection { return f.results }

// TestInspectorAnswersReachTheSinks: the detector's request goes to the
// inspector with the normalized query only, and its answer, given at once or
// later through Run's loop, becomes a missing_index finding in the sinks.
func TestInspectorAnswersReachTheSinks(t *testing.T) {
	for _, cached := range []bool{true, false} {
		synctest.Test(t, func(t *testing.T) {
			store := NewStore(10)
			fi := &fakeInspector{cached: cached, results: make(chan detector.Inspection, 4)}
			a := New(Config{Detector: detector.Config{Inspect: true}, Sinks: []Sink{store}, Inspector: fi})
			events := make(chan *pgwire.Execution, 100)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); a.Run(ctx, events) }()
			conn := &pgwire.ConnInfo{ID: 3, User: "app", Database: "shop", ApplicationName: "api"}
			for _, e := range loop(conn, time.Now(), 8) {
				events <- e
			}
			time.Sleep(2 * time.Second)
			synctest.Wait()
			got := store.List(detector.KindMissingIndex, time.Time{})
			if len(got) != 1 || got[0].Index == nil || got[0].Index.Create != "CREATE INDEX CONCURRENTLY users_id_idx ON users (id)" ||
				got[0].Severity != detector.SeverityCritical {
				t.Errorf("cached %v: missing_index findings %+v, want one on users (id), critical", cached, got)
			}
			fi.mu.Lock()
			if len(fi.asked) != 1 || fi.asked[0].Query != "SELECT name, email FROM users WHERE id = $1" {
				t.Errorf("asked %+v, want the lookup's normalized text once", fi.asked)
			}
			for _, r := range fi.asked {
				if strings.Contains(r.Query, "1000") {
					t.Errorf("request %+v holds a literal", r)
				}
			}
			fi.mu.Unlock()
			cancel()
			<-done
		})
	}
}
