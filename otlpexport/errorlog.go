package otlpexport

import (
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
)

// errorLog is the OpenTelemetry error handler of the process: the SDK
// reports every failed export to it (and partial successes, and its own
// misconfigurations), which during an outage is one error per batch. It
// logs the first at once, then at most one line per interval, saying how
// many it held back.
type errorLog struct {
	mu       sync.Mutex
	logger   *slog.Logger
	interval time.Duration
	now      func() time.Time
	last     time.Time // when a line was last logged; zero: never
	held     int       // errors since then, not logged
}

// Handle implements otel.ErrorHandler.
func (l *errorLog) Handle(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.logger == nil || err == nil {
		return
	}
	now := l.now()
	if !l.last.IsZero() && now.Sub(l.last) < l.interval {
		l.held++
		return
	}
	args := []any{"err", err.Error()}
	if l.held > 0 {
		args = append(args, "suppressed", l.held)
	}
	args = append(args, "hint", "findings are exported again once the endpoint answers; "+
		"errors are logged at most once per "+l.interval.String())
	l.logger.Warn("OTLP export failed", args...)
	l.last, l.held = now, 0
}

// processErrors is the process's error log; the OpenTelemetry error handler is
// global, so every Exporter shares it, with the last one's logger.
var (
	errorsOnce    sync.Once
	processErrors = &errorLog{now: time.Now}
)

// installErrorLog makes the OpenTelemetry error handler log to logger (nil:
// nowhere), at most once per interval.
func installErrorLog(logger *slog.Logger, interval time.Duration) {
	processErrors.mu.Lock()
	if processErrors.logger != logger {
		processErrors.last, processErrors.held = time.Time{}, 0
	}
	processErrors.logger, processErrors.interval = logger, interval
	processErrors.mu.Unlock()
	errorsOnce.Do(func() { otel.SetErrorHandler(processErrors) })
}
