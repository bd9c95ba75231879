package analyzer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/nplus1/nplus1/detector"
)

// Console writes one readable block per finding (kind, count, query, source,
// suggestion), with ANSI colors when color is set.
type Console struct {
	mu    sync.Mutex // guards w
	w     io.Writer
	color bool
}

// NewConsole returns a Console writing to w. Color is used when w is a
// terminal and NO_COLOR is not set in getenv.
func NewConsole(w io.Writer, getenv func(string) string) *Console {
	return &Console{w: w, color: IsTerminal(w) && getenv("NO_COLOR") == ""}
}

// IsTerminal reports whether w is a character device (a terminal).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

var kindTitle = map[detector.Kind]string{
	detector.KindNPlusOne:       "N+1 query",
	detector.KindDuplicateQuery: "duplicate query",
	detector.KindUnpaginated:    "unpaginated query",
	detector.KindSelectStar:     "SELECT *",
}

// Finding writes f.
func (c *Console) Finding(f *detector.Finding) {
	var b bytes.Buffer
	title := kindTitle[f.Kind]
	if title == "" {
		title = string(f.Kind)
	}
	sev := string(f.Severity)
	if c.color {
		code := "36" // info: cyan
		switch f.Severity {
		case detector.SeverityWarning:
			code = "33"
		case detector.SeverityCritical:
			code = "31"
		}
		title = "\x1b[1;" + code + "m" + title + "\x1b[0m"
	}
	fmt.Fprintf(&b, "nplus1: %s [%s] %s\n", title, sev, describeCount(f))
	fmt.Fprintf(&b, "  query:  %s\n", oneLine(f.Query))
	if f.Kind == detector.KindNPlusOne {
		if f.Source != nil {
			fmt.Fprintf(&b, "  source: %s (%d rows)\n", oneLine(f.Source.Query), f.Source.Rows)
		} else {
			fmt.Fprintf(&b, "  source: none found in the window\n")
		}
		if line := describeEvidence(f.Evidence); line != "" {
			fmt.Fprintf(&b, "  proof:  %s\n", line)
		}
	}
	where := fmt.Sprintf("conn %d, user %s, database %s", f.Connection.ID, f.Connection.User, f.Connection.Database)
	if f.ApplicationName != "" {
		where += ", application " + f.ApplicationName
	}
	if f.TraceID != "" {
		where += ", trace " + f.TraceID
	}
	if r := f.Tags["route"]; r != "" {
		where += ", route " + r
	} else if ctl := f.Tags["controller"]; ctl != "" {
		where += ", controller " + ctl
		if act := f.Tags["action"]; act != "" {
			where += "#" + act
		}
	}
	fmt.Fprintf(&b, "  where:  %s\n", where)
	fmt.Fprintf(&b, "  fix:    %s\n", f.Suggestion)
	c.mu.Lock()
	defer c.mu.Unlock()
	_, _ = c.w.Write(b.Bytes())
}

func describeCount(f *detector.Finding) string {
	var s string
	switch f.Kind {
	case detector.KindNPlusOne:
		s = fmt.Sprintf("%d executions with %d distinct parameter sets, %.1f ms", f.Count, f.DistinctParams, f.DurationMS)
	case detector.KindDuplicateQuery:
		s = fmt.Sprintf("%d executions with identical parameters, %.1f ms", f.Count, f.DurationMS)
	case detector.KindUnpaginated:
		s = fmt.Sprintf("up to %d rows without LIMIT", f.Rows)
	default:
		s = fmt.Sprintf("%d executions", f.Count)
	}
	if f.Occurrences > 1 {
		s += fmt.Sprintf(" (seen %d times since last reported)", f.Occurrences)
	}
	return s
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:297] + "..."
	}
	return s
}

// LogSink writes each finding as one structured log record (for
// --log-format json): message "finding", attribute "finding" holding the
// finding's JSON object.
type LogSink struct{ Logger *slog.Logger }

// Finding logs f.
func (l LogSink) Finding(f *detector.Finding) { l.Logger.Info("finding", slog.Any("finding", f)) }

// JSONL appends one JSON object per finding to a writer (a --findings-out file).
type JSONL struct {
	mu  sync.Mutex // guards enc and err
	enc *json.Encoder
	err error // first write error; later findings are not written
}

// NewJSONL returns a JSONL sink writing to w.
func NewJSONL(w io.Writer) *JSONL {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &JSONL{enc: enc}
}

// Finding writes f as one line.
func (j *JSONL) Finding(f *detector.Finding) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err == nil {
		j.err = j.enc.Encode(f)
	}
}

// Err returns the first write error.
func (j *JSONL) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}

// Gate counts findings for the CI gate (--fail-on).
type Gate struct {
	mu     sync.Mutex
	failOn map[detector.Kind]bool
	counts map[detector.Kind]*gateCount
}

type gateCount struct{ findings, occurrences, executions int }

// NewGate returns a Gate that fails on the given kinds.
func NewGate(failOn []detector.Kind) *Gate {
	g := &Gate{failOn: map[detector.Kind]bool{}, counts: map[detector.Kind]*gateCount{}}
	for _, k := range failOn {
		g.failOn[k] = true
	}
	return g
}

// Finding counts f.
func (g *Gate) Finding(f *detector.Finding) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.counts[f.Kind]
	if c == nil {
		c = &gateCount{}
		g.counts[f.Kind] = c
	}
	c.findings++
	c.occurrences += max(f.Occurrences, 1)
	c.executions += f.Count
}

// Failed returns the number of findings of the fail-on kinds.
func (g *Gate) Failed() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for k, c := range g.counts {
		if g.failOn[k] {
			n += c.findings
		}
	}
	return n
}

// Counts returns the number of findings reported per kind (every kind,
// zeros included).
func (g *Gate) Counts() map[detector.Kind]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[detector.Kind]int)
	for _, k := range detector.Kinds() {
		if c := g.counts[k]; c != nil {
			out[k] = c.findings
		} else {
			out[k] = 0
		}
	}
	return out
}

// Summary writes a table of findings by kind, marking the fail-on kinds.
func (g *Gate) Summary(w io.Writer) {
	g.mu.Lock()
	defer g.mu.Unlock()
	kinds := detector.Kinds()
	sort.SliceStable(kinds, func(i, j int) bool { return kinds[i] < kinds[j] })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tFINDINGS\tOCCURRENCES\tFAIL-ON")
	for _, k := range kinds {
		c := g.counts[k]
		if c == nil {
			c = &gateCount{}
		}
		mark := ""
		if g.failOn[k] {
			mark = "yes"
			if c.findings > 0 {
				mark = "FAIL"
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", k, c.findings, c.occurrences, mark)
	}
	tw.Flush()
}

// describeEvidence says in words why an N+1 is one.
func describeEvidence(ev *detector.Evidence) string {
	switch {
	case ev == nil:
		return ""
	case ev.Kind == detector.EvidenceDataFlow:
		s := fmt.Sprintf("%d of its %d keys ($%d) were read from the source's column %s", ev.Matched, ev.Of, ev.Param, printable(ev.SourceColumn))
		if ev.SourceConnection != 0 {
			s += fmt.Sprintf(" (on conn %d of the same pool)", ev.SourceConnection)
		}
		return s
	case ev.Kind == detector.EvidenceRepetition:
		return "repetition only: no earlier result held its keys (keys from the request, or no rows on the wire)"
	}
	return ev.Kind
}

// printable replaces control characters, which a column name may hold, so
// that nothing the traffic sends can drive the operator's terminal.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}
