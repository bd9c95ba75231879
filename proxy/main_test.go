package proxy

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/nplus1/nplus1/internal/pgtest"
)

// The integration tests share one throwaway PostgreSQL, started by the first
// test that asks for it (itPG) so that the package's pure unit tests run
// without one, and stopped here after all tests. A missing server is a test
// failure, never a skip.
var (
	itPGOnce sync.Once
	itPGSrv  *pgtest.Server
	itPGErr  error
)

// itPG returns the shared PostgreSQL server, starting it on first use.
func itPG(t testing.TB) *pgtest.Server {
	t.Helper()
	itPGOnce.Do(func() {
		itPGSrv, itPGErr = pgtest.Start(pgtest.Options{})
	})
	if itPGErr != nil {
		t.Fatalf("start PostgreSQL for the integration tests: %v", itPGErr)
	}
	return itPGSrv
}

func TestMain(m *testing.M) {
	// Goroutines alive before any test (runtime, testing) are not leaks.
	ignore := goleak.IgnoreCurrent()
	code := m.Run()
	if itPGSrv != nil {
		itPGSrv.Stop()
	}
	if code == 0 {
		if err := goleak.Find(ignore); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines left after the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
