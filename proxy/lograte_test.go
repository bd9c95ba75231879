package proxy

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nplus1/nplus1/internal/pgtest"
)

func TestLogLimiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		lg := slog.New(slog.NewTextHandler(&buf, nil))
		var l logLimiter
		for range 25 {
			l.log(lg, logConnError, slog.LevelInfo, "connection ended with error")
			l.log(lg, logRejected, slog.LevelWarn, "connection refused")
		}
		if n := strings.Count(buf.String(), "connection ended"); n != logBurst {
			t.Errorf("got %d lines of one kind in a burst of 25, want %d", n, logBurst)
		}
		if n := strings.Count(buf.String(), "connection refused"); n != logBurst {
			t.Errorf("another kind: got %d lines, want its own %d", n, logBurst)
		}
		buf.Reset()
		time.Sleep(logInterval)
		l.log(lg, logConnError, slog.LevelInfo, "connection ended with error")
		if !strings.Contains(buf.String(), "suppressed=15") {
			t.Errorf("the first line of the next interval should count the 15 held back: %q", buf.String())
		}
		buf.Reset()
		l.log(lg, logConnError, slog.LevelDebug-1, "below the level")
		if buf.Len() != 0 {
			t.Errorf("a line below the logger's level was written: %q", buf.String())
		}
	})
}

// TestRefusalsAreLoggedAtARate: a flood of connections over
// --max-connections is counted in full and logged, but at a bounded rate.
func TestRefusalsAreLoggedAtARate(t *testing.T) {
	var buf lockedBuffer
	p := itStartProxy(t, Config{MaxConnections: 1, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	ctx := itCtx(t, 30*time.Second)
	hold := itConnect(t, ctx, p.URL(pgtest.Superuser))
	defer hold.Close(ctx)
	const flood = 40
	for range flood {
		r := itDialRaw(t, p.Addr)
		if _, err := r.nc.Write(itStartupPacket(3<<16, "user", pgtest.Superuser, "database", pgtest.Database)); err != nil {
			t.Fatal(err)
		}
		b, _ := itReadUntilClosed(r.nc, 10*time.Second)
		if code, _, _ := itFirstError(b); code != "53300" {
			t.Fatalf("got %q, want 53300", code)
		}
	}
	if got := p.Srv.Stats().ConnsRejected; got != flood {
		t.Errorf("ConnsRejected = %d, want %d", got, flood)
	}
	if n := strings.Count(buf.String(), "too many clients (53300)"); n < 1 || n > logBurst {
		t.Errorf("got %d refusal lines for %d refusals, want 1 to %d:\n%s", n, flood, logBurst, buf.String())
	}
}

// lockedBuffer is a bytes.Buffer safe for a logger shared by goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
