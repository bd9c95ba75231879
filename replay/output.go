package replay

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nplus1/nplus1/analyzer"
	"github.com/nplus1/nplus1/detector"
)

// Report is what a replay produced, for the json and junit formats.
type Report struct {
	// Mode is "analysis" or "re-execution".
	Mode string
	// Findings are those reported, oldest first (bounded by the collector;
	// FindingsDropped counts those beyond).
	Findings        []*detector.Finding
	FindingsDropped int
	Summary         *Summary
	// Input describes what was read: formats, files and what could not be
	// followed.
	Input InputStats
	// Skipped counts statements not re-executed, by reason (re-execution).
	Skipped map[string]int64 `json:",omitempty"`
	// Elapsed is the wall time of the replay.
	Elapsed time.Duration
}

// InputStats say what the sources read and what they could not use.
type InputStats struct {
	Files []string `json:"files"`
	// Formats maps each file to its detected format.
	Formats map[string]string `json:"formats"`
	Bytes   int64             `json:"bytes"`
	// Executions is the number of statements read from the files.
	Executions int64 `json:"executions"`
	// Notes are what the readers could not follow (skipped bytes of a
	// capture that started mid-connection, TLS connections, bad lines).
	Notes []string `json:"notes,omitempty"`
	// Problems are what of the files could not be read (Input.Problems):
	// a file cut short or corrupt, records or lines not of its format.
	// Each is also among the Notes. See Err.
	Problems []string `json:"problems,omitempty"`
}

// ErrIncompleteInput is what InputStats.Err's errors wrap.
var ErrIncompleteInput = errors.New("incomplete input")

// Err says whether the input was read completely: nil when the files held
// no Problems; else an error wrapping ErrIncompleteInput that names them,
// and says whether nothing at all could be read (no statement) or the
// report covers only what could be. The problems quote the input, so the
// message is escaped (analyzer.Printable). A file that is read completely
// but holds no statement is not an error (its note says so).
func (st InputStats) Err() error {
	if len(st.Problems) == 0 {
		return nil
	}
	what := analyzer.Printable(strings.Join(st.Problems, "; ")) // for a terminal, in text or JSON logs
	if st.Executions == 0 {
		return fmt.Errorf("%w: nothing could be read: %s", ErrIncompleteInput, what)
	}
	return fmt.Errorf("%w: the report covers only the %s that could be read: %s", ErrIncompleteInput, plural(st.Executions, "statement", "statements"), what)
}

// Collector keeps findings for a report, at most max of them.
type Collector struct {
	max      int
	findings []*detector.Finding
	dropped  int
}

// NewCollector returns a Collector keeping up to max findings (100,000 when 0).
func NewCollector(max int) *Collector {
	if max <= 0 {
		max = 100000
	}
	return &Collector{max: max}
}

// Finding keeps a copy of f.
func (c *Collector) Finding(f *detector.Finding) {
	if len(c.findings) >= c.max {
		c.dropped++
		return
	}
	cp := *f
	c.findings = append(c.findings, &cp)
}

// Findings returns what was kept and how many were dropped.
func (c *Collector) Findings() ([]*detector.Finding, int) { return c.findings, c.dropped }

// ms is a duration in milliseconds, for JSON, with microsecond precision.
type ms time.Duration

func (d ms) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf("%.3f", float64(time.Duration(d).Round(time.Microsecond))/float64(time.Millisecond))), nil
}

type jsonFingerprint struct {
	Fingerprint string                `json:"fingerprint"`
	Query       string                `json:"query"`
	Calls       int64                 `json:"calls"`
	TotalMS     ms                    `json:"total_ms"`
	MeanMS      ms                    `json:"mean_ms"`
	P95MS       ms                    `json:"p95_ms"`
	MaxMS       ms                    `json:"max_ms"`
	Rows        int64                 `json:"rows"`
	Errors      int64                 `json:"errors,omitempty"`
	ErrorCodes  map[string]int64      `json:"error_codes,omitempty"`
	Findings    map[detector.Kind]int `json:"findings,omitempty"`
}

type jsonSummary struct {
	Statements   int64                 `json:"statements"`
	Errors       int64                 `json:"errors"`
	Connections  int                   `json:"connections"`
	Start        *time.Time            `json:"start,omitempty"`
	End          *time.Time            `json:"end,omitempty"`
	Findings     map[detector.Kind]int `json:"findings"`
	Fingerprints []jsonFingerprint     `json:"fingerprints"`
}

type jsonReport struct {
	Mode            string              `json:"mode"`
	Findings        []*detector.Finding `json:"findings"`
	FindingsDropped int                 `json:"findings_dropped,omitempty"`
	Summary         jsonSummary         `json:"summary"`
	Input           InputStats          `json:"input"`
	Skipped         map[string]int64    `json:"skipped,omitempty"`
	ElapsedMS       ms                  `json:"elapsed_ms"`
}

// WriteJSON writes the report as one JSON document: the findings (the
// live proxy's schema), the summary per fingerprint, and the input's stats.
func WriteJSON(w io.Writer, r *Report) error {
	s := r.Summary
	js := jsonSummary{
		Statements: s.Statements, Errors: s.Errors, Connections: s.Connections,
		Findings: map[detector.Kind]int{}, Fingerprints: []jsonFingerprint{},
	}
	for _, k := range detector.Kinds() {
		js.Findings[k] = s.Findings[k]
	}
	if !s.Start.IsZero() {
		st, en := s.Start.UTC(), s.End.UTC()
		js.Start, js.End = &st, &en
	}
	for _, f := range s.Fingerprints {
		js.Fingerprints = append(js.Fingerprints, jsonFingerprint{
			Fingerprint: f.Fingerprint, Query: f.Query, Calls: f.Calls,
			TotalMS: ms(f.Total), MeanMS: ms(f.Mean()), P95MS: ms(f.P95()), MaxMS: ms(f.Max),
			Rows: f.Rows, Errors: f.Errors, ErrorCodes: f.ErrorCodes, Findings: f.Findings,
		})
	}
	findings := r.Findings
	if findings == nil {
		findings = []*detector.Finding{}
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(jsonReport{
		Mode: r.Mode, Findings: findings, FindingsDropped: r.FindingsDropped, Summary: js,
		Input: r.Input, Skipped: r.Skipped, ElapsedMS: ms(r.Elapsed),
	})
}

// WriteText writes the summary as a table, at most top fingerprints (0: all).
func WriteText(w io.Writer, r *Report, top int) error {
	s := r.Summary
	var b strings.Builder
	span := ""
	if !s.Start.IsZero() {
		span = fmt.Sprintf(", %s to %s (%s)", s.Start.UTC().Format("2006-01-02 15:04:05.000"),
			s.End.UTC().Format("15:04:05.000"), s.End.Sub(s.Start).Round(time.Millisecond))
	}
	conns := plural(s.Connections, "connection", "connections")
	if s.ConnsAtLeast {
		conns = "at least " + conns
	}
	nf := 0
	for _, n := range s.Findings {
		nf += n
	}
	fmt.Fprintf(&b, "nplus1 replay (%s): %s on %s%s; %s; %s",
		r.Mode, plural(s.Statements, "statement", "statements"), conns, span, plural(s.Errors, "error", "errors"), plural(nf, "finding", "findings"))
	if nf > 0 {
		var parts []string
		for _, k := range detector.Kinds() {
			if n := s.Findings[k]; n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", n, k))
			}
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
	}
	b.WriteString("\n")
	for _, n := range r.Input.Notes {
		fmt.Fprintf(&b, "  note: %s\n", analyzer.Printable(n))
	}
	if len(r.Skipped) > 0 {
		keys := make([]string, 0, len(r.Skipped))
		for k := range r.Skipped {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "  not re-executed: %d %s\n", r.Skipped[k], analyzer.Printable(k))
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	if len(s.Fingerprints) == 0 {
		return nil
	}
	shown := s.Fingerprints
	if top > 0 && len(shown) > top {
		shown = shown[:top]
	}
	kw := len("FINDINGS")
	for _, f := range shown {
		kw = max(kw, len(findingKinds(f)))
	}
	var t strings.Builder
	fmt.Fprintf(&t, "\n%8s %11s %10s %10s %9s %7s  %-*s  %-16s  %s\n", "CALLS", "TOTAL ms", "MEAN ms", "P95 ms", "ROWS", "ERRORS", kw, "FINDINGS", "FINGERPRINT", "QUERY")
	for _, f := range shown {
		fmt.Fprintf(&t, "%8d %11.3f %10.3f %10.3f %9d %7d  %-*s  %-16s  %s\n", f.Calls, msf(f.Total), msf(f.Mean()), msf(f.P95()),
			f.Rows, f.Errors, kw, findingKinds(f), orDash(analyzer.Printable(f.Fingerprint)), oneLine(f.Query, 120))
	}
	if _, err := io.WriteString(w, t.String()); err != nil {
		return err
	}
	if len(shown) < len(s.Fingerprints) {
		more := plural(len(s.Fingerprints)-len(shown), "more query shape", "more query shapes")
		fmt.Fprintf(w, "(%s; --top 0 shows all, --format json lists all)\n", more)
	}
	return nil
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func findingKinds(f *FingerprintStats) string {
	var parts []string
	for _, k := range detector.Kinds() {
		if n := f.Findings[k]; n > 0 {
			if n == 1 {
				parts = append(parts, string(k))
			} else {
				parts = append(parts, fmt.Sprintf("%s×%d", k, n))
			}
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ",")
}

// oneLine is s on one line, safe for a terminal: runs of white space made
// one space, cut to n bytes on a character boundary (0: not cut), then
// analyzer.Printable.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if n > 0 && len(s) > n {
		i := max(n-3, 0)
		for i > 0 && !utf8.RuneStart(s[i]) {
			i--
		}
		s = s[:i] + "..."
	}
	return analyzer.Printable(s)
}

// JUnit document types.
type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Name    string       `xml:"name,attr"`
	Tests   int          `xml:"tests,attr"`
	Fails   int          `xml:"failures,attr"`
	Time    string       `xml:"time,attr"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name  string      `xml:"name,attr"`
	Tests int         `xml:"tests,attr"`
	Fails int         `xml:"failures,attr"`
	Time  string      `xml:"time,attr"`
	Cases []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes one testcase per finding, in one testsuite per kind.
// A finding of a failOn kind (every kind when failOn is empty) is a
// failure, unless known (nil: none is) says it is in the baseline; the
// others pass and carry their details in system-out.
func WriteJUnit(w io.Writer, r *Report, failOn []detector.Kind, known func(*detector.Finding) bool) error {
	doc := junitSuites{Name: "nplus1 replay", Time: secs(r.Elapsed)}
	for _, k := range detector.Kinds() {
		suite := junitSuite{Name: "nplus1." + string(k), Time: "0"}
		for _, f := range r.Findings {
			if f.Kind != k {
				continue
			}
			body := findingText(f)
			c := junitCase{
				Name:      fmt.Sprintf("%s %s: %s", analyzer.Printable(f.Fingerprint), f.Kind, oneLine(f.Query, 200)),
				Classname: "nplus1." + string(k),
				Time:      fmt.Sprintf("%.6f", f.DurationMS/1000),
			}
			if (len(failOn) == 0 || slices.Contains(failOn, k)) && (known == nil || !known(f)) {
				c.Failure = &junitFailure{Message: oneLine(f.Suggestion, 500), Type: string(k), Text: body}
				suite.Fails++
			} else {
				c.SystemOut = body
			}
			suite.Cases = append(suite.Cases, c)
			suite.Tests++
		}
		doc.Tests += suite.Tests
		doc.Fails += suite.Fails
		doc.Suites = append(doc.Suites, suite)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// findingText is a finding's details for a JUnit failure.
func findingText(f *detector.Finding) string {
	var b strings.Builder
	p := analyzer.Printable
	fmt.Fprintf(&b, "%s [%s] fingerprint %s: %s", p(string(f.Kind)), p(string(f.Severity)), p(f.Fingerprint), plural(f.Count, "execution", "executions"))
	if f.DistinctParams > 0 {
		fmt.Fprintf(&b, ", %s", plural(f.DistinctParams, "distinct parameter set", "distinct parameter sets"))
	}
	if f.Rows > 0 {
		fmt.Fprintf(&b, ", up to %s", plural(f.Rows, "row", "rows"))
	}
	fmt.Fprintf(&b, ", %.3f ms\nquery:  %s\n", f.DurationMS, oneLine(f.Query, 0))
	if f.Source != nil {
		fmt.Fprintf(&b, "source: %s (%s)\n", oneLine(f.Source.Query, 0), plural(f.Source.Rows, "row", "rows"))
	}
	fmt.Fprintf(&b, "where:  conn %d, user %s, database %s", f.Connection.ID, p(f.Connection.User), p(f.Connection.Database))
	if f.ApplicationName != "" {
		fmt.Fprintf(&b, ", application %s", p(f.ApplicationName))
	}
	if f.TraceID != "" {
		fmt.Fprintf(&b, ", trace %s", p(f.TraceID))
	}
	fmt.Fprintf(&b, "\nwindow: %s to %s\nfix:    %s\n", f.WindowStart.UTC().Format(time.RFC3339Nano), f.WindowEnd.UTC().Format(time.RFC3339Nano), p(f.Suggestion))
	return b.String()
}

// plural is n followed by one (n = 1) or many: "1 finding", "2 findings".
func plural[N ~int | ~int64](n N, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
