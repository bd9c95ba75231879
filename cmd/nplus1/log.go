package main

import (
	"io"
	"log/slog"
	"strconv"

	"github.com/nplus1/nplus1/analyzer"
)

// newLogger builds the process logger. level and format were checked by the
// flags (see logLevels, logFormats). Components add a "component" attribute.
func newLogger(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	switch level {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// The values of --color.
const (
	colorAuto   = "auto"   // on a terminal, unless NO_COLOR is set
	colorAlways = "always" // always, NO_COLOR or not (CI logs that render ANSI colors)
	colorNever  = "never"
)

// useColor reports whether output to w gets ANSI colors under --color mode:
// always, never, or (auto) when w is a terminal and the NO_COLOR variable is
// not set or empty (no-color.org).
func useColor(mode string, w io.Writer, getenv func(string) string) bool {
	switch mode {
	case colorAlways:
		return true
	case colorNever:
		return false
	}
	return getenv("NO_COLOR") == "" && analyzer.IsTerminal(w)
}

// plural is n followed by one (n = 1) or many: "1 execution", "2 executions".
func plural[N ~int | ~int64](n N, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.FormatInt(int64(n), 10) + " " + many
}
