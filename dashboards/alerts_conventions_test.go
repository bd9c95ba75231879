package dashboards

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// runbookBase is where every alert's runbook_url points: this directory's
// README in the project's repository.
const runbookBase = "https://github.com/nplus1/nplus1/blob/main/dashboards/README.md"

// alertSeverities are the values of an alert's severity label: warning goes
// to a channel, critical pages.
var alertSeverities = []string{"warning", "critical"}

// jobMatcher finds a matcher on the job label in a selector's braces.
var jobMatcher = regexp.MustCompile(`(^|,)\s*job\s*(=|!=|=~|!~)`)

// TestAlertConventions: every alert has a severity label of warning or
// critical, a summary, a description and a runbook_url to its section of
// README.md, which says what it means, how to look and what to do; no alert
// selects on a job name; and one alert pages on critical findings.
func TestAlertConventions(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := markdownSections(string(readme))
	pagesOnCritical := false
	alerts := 0
	for f, rf := range ruleFiles(t) {
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				alerts++
				where := f + ": " + r.Alert
				sev := r.Labels["severity"]
				if !slices.Contains(alertSeverities, sev) {
					t.Errorf("%s: severity label %q, want one of %v", where, sev, alertSeverities)
				}
				for _, a := range []string{"summary", "description", "runbook_url"} {
					if strings.TrimSpace(r.Annotations[a]) == "" {
						t.Errorf("%s: no %s annotation", where, a)
					}
				}
				anchor := "runbook-" + strings.ToLower(r.Alert)
				if want := runbookBase + "#" + anchor; r.Annotations["runbook_url"] != want {
					t.Errorf("%s: runbook_url %q, want %q", where, r.Annotations["runbook_url"], want)
				}
				body, ok := sections[anchor]
				if !ok {
					t.Errorf("%s: README.md has no section #%s (a heading \"### Runbook: %s\")", where, anchor, r.Alert)
				}
				for _, part := range []string{"What it means.", "How to look.", "What to do."} {
					if ok && !strings.Contains(body, part) {
						t.Errorf("%s: its runbook section #%s lacks %q", where, anchor, part)
					}
				}
				sels, err := selectors(r.Expr)
				if err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				for _, s := range sels {
					if jobMatcher.MatchString(s.matchers) {
						t.Errorf("%s: %s{%s} selects on a job name; the rules must work whatever the job is called", where, s.name, s.matchers)
					}
					if sev == "critical" && s.name == "nplus1_findings_total" && strings.Contains(s.matchers, `severity="critical"`) {
						pagesOnCritical = true
					}
				}
			}
		}
	}
	if alerts == 0 {
		t.Fatal("no alerts found")
	}
	if !pagesOnCritical {
		t.Error(`no critical alert selects nplus1_findings_total{severity="critical"}: a critical finding must be able to page`)
	}
}

// TestAlertConventionsCatchMistakes keeps the checks above honest.
func TestAlertConventionsCatchMistakes(t *testing.T) {
	for _, m := range []string{`job="nplus1"`, `kind="n_plus_one", job=~"nplus1|proxy"`, ` job != "x"`} {
		if !jobMatcher.MatchString(m) {
			t.Errorf("jobMatcher misses {%s}", m)
		}
	}
	for _, m := range []string{`kind="n_plus_one"`, `myjob="x"`, `instance="job=1"`} {
		if jobMatcher.MatchString(m) {
			t.Errorf("jobMatcher takes {%s} for a job matcher", m)
		}
	}
	s := markdownSections("# T\n\n## Runbook: NPlus1ProxyDown\n\n**What it means.** x\n\n## Other `code`, too!\ny\n")
	if !strings.Contains(s["runbook-nplus1proxydown"], "What it means.") || strings.Contains(s["runbook-nplus1proxydown"], "y") {
		t.Errorf("markdownSections: runbook section %q", s["runbook-nplus1proxydown"])
	}
	if _, ok := s["other-code-too"]; !ok {
		t.Errorf("markdownSections: anchors %v, want other-code-too among them", s)
	}
}

// markdownSections maps the anchor of each heading of a Markdown document
// (as GitHub makes it) to the text under it, up to the next heading.
// Headings inside ``` blocks are text.
func markdownSections(doc string) map[string]string {
	out := make(map[string]string)
	var anchor string
	var body strings.Builder
	flush := func() {
		if anchor != "" {
			out[anchor] = body.String()
		}
		body.Reset()
	}
	inFence := false
	for line := range strings.SplitSeq(doc, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inFence = !inFence
		}
		if !inFence && strings.HasPrefix(line, "#") {
			if text, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " "); ok {
				flush()
				anchor = githubAnchor(text)
				continue
			}
		}
		body.WriteString(line)
		body.WriteByte('\n')
	}
	flush()
	return out
}

// githubAnchor is the anchor GitHub gives a heading: lower case, spaces
// made hyphens, punctuation other than hyphens and underscores dropped.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
