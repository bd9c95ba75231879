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
	"unicode/utf8"

	"golang.org/x/term"

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
	return NewColorConsole(w, IsTerminal(w) && getenv("NO_COLOR") == "")
}

// NewColorConsole returns a Console writing to w, with ANSI colors when
// color is set.
func NewColorConsole(w io.Writer, color bool) *Console {
	return &Console{w: w, color: color}
}

// IsTerminal reports whether w is a terminal: a file whose descriptor
// answers the terminal ioctl (a character device is not enough: /dev/null
// is one).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

var kindTitle = map[detector.Kind]string{
	detector.KindNPlusOne:        "N+1 query",
	detector.KindDuplicateQuery:  "duplicate query",
	detector.KindUnpaginated:     "unpaginated query",
	detector.KindSelectStar:      "SELECT *",
	detector.KindLeadingWildcard: "leading wildcard",
	detector.KindDeepOffset:      "deep OFFSET",
	detector.KindMissingIndex:    "missing index",
	detector.KindLostUpdate:      "lost update",
}

// Finding writes f.
func (c *Console) Finding(f *detector.Finding) {
	var b bytes.Buffer
	title := kindTitle[f.Kind]
	if title == "" {
		title = string(f.Kind)
	}
	if f.Kind == detector.KindNPlusOne && f.Command != "" {
		title = "N+1 " + f.Command // a write, one row at a time
	}
	title = Printable(title)
	sev := Printable(string(f.Severity))
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
	if at := f.Location.String(); at != "" {
		// Where a developer looks first: the code that ran it.
		fmt.Fprintf(&b, "  at:     %s\n", Printable(at))
	}
	fmt.Fprintf(&b, "  query:  %s\n", oneLine(f.Query))
	if f.Kind == detector.KindNPlusOne {
		if f.Source != nil {
			fmt.Fprintf(&b, "  source: %s (%s)\n", oneLine(f.Source.Query), plural(f.Source.Rows, "row", "rows"))
		} else {
			fmt.Fprintf(&b, "  source: none found in the window\n")
		}
		if line := describeEvidence(f.Evidence); line != "" {
			fmt.Fprintf(&b, "  proof:  %s\n", line)
		}
	}
	where := fmt.Sprintf("conn %d, user %s, database %s", f.Connection.ID, Printable(f.Connection.User), Printable(f.Connection.Database))
	if f.ApplicationName != "" {
		where += ", application " + Printable(f.ApplicationName)
	}
	if f.TraceID != "" {
		where += ", trace " + Printable(f.TraceID)
	}
	fmt.Fprintf(&b, "  where:  %s\n", where)
	fmt.Fprintf(&b, "  fix:    %s\n", Printable(f.Suggestion))
	c.mu.Lock()
	defer c.mu.Unlock()
	_, _ = c.w.Write(b.Bytes())
}

func describeCount(f *detector.Finding) string {
	var s string
	switch f.Kind {
	case detector.KindNPlusOne:
		s = fmt.Sprintf("%s with %s, %.1f ms", plural(f.Count, "execution", "executions"),
			plural(f.DistinctParams, "distinct parameter set", "distinct parameter sets"), f.DurationMS)
	case detector.KindDuplicateQuery:
		s = fmt.Sprintf("%s with identical parameters, %.1f ms", plural(f.Count, "execution", "executions"), f.DurationMS)
	case detector.KindUnpaginated:
		s = fmt.Sprintf("up to %s without LIMIT", plural(f.Rows, "row", "rows"))
	default:
		s = plural(f.Count, "execution", "executions")
	}
	switch {
	case f.Occurrences > 1 && f.Connections > 1:
		s += fmt.Sprintf(" (seen %d times on %d connections since last reported)", f.Occurrences, f.Connections)
	case f.Occurrences > 1:
		s += fmt.Sprintf(" (seen %d times since last reported)", f.Occurrences)
	}
	return s
}

// oneLine is s on one line for the console: runs of white space made one
// space, cut to about 300 bytes (on a character boundary), then Printable.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = cut(s, 297) + "..."
	}
	return Printable(s)
}

// cut returns s cut to at most n bytes, on the start of a UTF-8 sequence,
// so that cutting never makes a valid text invalid.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	n = max(n, 0)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
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
	mu       sync.Mutex
	failOn   map[detector.Kind]bool
	counts   map[detector.Kind]*gateCount
	baseline *Baseline // nil: every finding counts
}

// known counts the findings in the baseline: they do not fail the gate.
type gateCount struct{ findings, occurrences, executions, known int }

// NewGate returns a Gate that fails on the given kinds.
func NewGate(failOn []detector.Kind) *Gate {
	g := &Gate{failOn: map[detector.Kind]bool{}, counts: map[detector.Kind]*gateCount{}}
	for _, k := range failOn {
		g.failOn[k] = true
	}
	return g
}

// UseBaseline makes the findings in b pass the gate: only new ones fail.
func (g *Gate) UseBaseline(b *Baseline) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.baseline = b
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
	if g.baseline != nil && g.baseline.see(f) {
		c.known++
	}
	c.findings++
	c.occurrences += max(f.Occurrences, 1)
	c.executions += f.Count
}

// Failed returns the number of findings of the fail-on kinds that are not
// in the baseline.
func (g *Gate) Failed() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for k, c := range g.counts {
		if g.failOn[k] {
			n += c.findings - c.known
		}
	}
	return n
}

// Known returns the number of findings that were in the baseline.
func (g *Gate) Known() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, c := range g.counts {
		n += c.known
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
	if g.baseline != nil {
		fmt.Fprintln(tw, "KIND\tFINDINGS\tIN BASELINE\tNEW\tOCCURRENCES\tFAIL-ON")
	} else {
		fmt.Fprintln(tw, "KIND\tFINDINGS\tOCCURRENCES\tFAIL-ON")
	}
	for _, k := range kinds {
		c := g.counts[k]
		if c == nil {
			c = &gateCount{}
		}
		mark := ""
		if g.failOn[k] {
			mark = "yes"
			if c.findings > c.known {
				mark = "FAIL"
			}
		}
		if g.baseline != nil {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", k, c.findings, c.known, c.findings-c.known, c.occurrences, mark)
		} else {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", k, c.findings, c.occurrences, mark)
		}
	}
	tw.Flush()
}

// plural is n followed by one (n = 1) or many: "1 execution", "2 executions".
func plural[N ~int | ~int64](n N, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// describeEvidence says in words why an N+1 is one.
func describeEvidence(ev *detector.Evidence) string {
	switch {
	case ev == nil:
		return ""
	case ev.Kind == detector.EvidenceDataFlow:
		were := "were"
		if ev.Matched == 1 {
			were = "was"
		}
		s := fmt.Sprintf("%d of its %s ($%d) %s read from the source's column %s", ev.Matched, plural(ev.Of, "key", "keys"), ev.Param, were, Printable(ev.SourceColumn))
		if ev.SourceConnection != 0 {
			s += fmt.Sprintf(" (on conn %d of the same pool)", ev.SourceConnection)
		}
		if ev.Hops > 1 {
			s += fmt.Sprintf("; its lookups went out over %d connections of the pool", ev.Hops)
		}
		return s
	case ev.Kind == detector.EvidenceTransaction:
		return "one explicit transaction ran them all (a pool never shares a transaction between requests)"
	case ev.Kind == detector.EvidenceRepetition:
		return "repetition only: no earlier result held its keys (keys from the request, or no rows on the wire)"
	}
	return Printable(ev.Kind)
}

// Printable returns s safe to write to a terminal. Whatever a terminal
// could take as a control is written as a visible escape instead: C0
// controls (tab, CR and LF included) and DEL as \x1b, C1 controls
// (U+0080-U+009F, which some terminals take as ESC sequences: U+009B is
// CSI) as \u009b, the bidirectional embedding, override and isolate
// controls (U+202A-U+202E, U+2066-U+2069), which reorder what a line
// shows, as \u202e, and each byte that is not part of valid UTF-8 as \xff.
// Every other character, letters of any script included, is kept, so names
// stay readable; a backslash is kept as it is.
//
// Everything that reaches a terminal from the traffic or the input files
// goes through it: queries, table and column names, user, database,
// application_name, trace ids and tags (the console's finding blocks), and
// replay's report lines and notes. JSON is escaped by its encoder instead.
func Printable(s string) string {
	i := 0
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				break
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if escapedRune(r, n) {
			break
		}
		i += n
	}
	if i == len(s) {
		return s // the common case: nothing to escape, nothing allocated
	}
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s) + 16)
	b.WriteString(s[:i])
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				b.WriteString(`\x`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			} else {
				b.WriteByte(c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1: // not UTF-8: the byte itself
			b.WriteString(`\x`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		case escapedRune(r, n):
			b.WriteString(`\u`)
			for shift := 12; shift >= 0; shift -= 4 {
				b.WriteByte(hex[(r>>shift)&0xf])
			}
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// escapedRune reports whether Printable escapes the rune r, decoded from n
// bytes (a RuneError of 1 byte is a byte that is not UTF-8).
func escapedRune(r rune, n int) bool {
	switch {
	case r == utf8.RuneError:
		return n == 1
	case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0): // C0, DEL, C1
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069: // bidi embeddings, overrides, isolates
		return true
	}
	return false
}
