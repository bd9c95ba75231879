package proxy

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Kinds of log lines that a flood of connections could repeat without end:
// each is rate limited on its own (see logLimiter). Their counts are in
// Stats (and so in the metrics) whether logged or not.
const (
	logConnError = iota
	logUpstreamError
	logProtocolError
	logRejected
	logLoginRejected
	logCancelFailed
	numLogKinds
)

// Burst and interval of the rate-limited lines: at most logBurst lines of a
// kind per logInterval.
const (
	logBurst    = 10
	logInterval = 10 * time.Second
)

// logLimiter lets through at most logBurst lines of a kind per logInterval;
// the lines it holds back are counted and reported on the next one it lets
// through, as "suppressed".
type logLimiter struct {
	mu    sync.Mutex
	kinds [numLogKinds]struct {
		start      time.Time // of the current interval
		n          int       // lines let through in it
		suppressed int       // held back since the last line let through
	}
}

// log writes the line through lg unless this kind is over its rate.
func (l *logLimiter) log(lg *slog.Logger, kind int, level slog.Level, msg string, args ...any) {
	if !lg.Enabled(context.Background(), level) {
		return
	}
	now := time.Now()
	l.mu.Lock()
	k := &l.kinds[kind]
	if now.Sub(k.start) >= logInterval {
		k.start, k.n = now, 0
	}
	if k.n >= logBurst {
		k.suppressed++
		l.mu.Unlock()
		return
	}
	k.n++
	suppressed := k.suppressed
	k.suppressed = 0
	l.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	lg.Log(context.Background(), level, msg, args...)
}
