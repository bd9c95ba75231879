package dashboards

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/nplus1/nplus1/internal/promtest"
	"github.com/nplus1/nplus1/metrics"
)

// Files, relative to this directory.
const (
	dashboardGlob = "grafana/dashboards/*.json"
	ruleGlob      = "prometheus/*.yml"
	unitTestGlob  = "*_test.yml"
	promConfig    = "prometheus/prometheus.yml"
)

// expression is one PromQL expression and where it comes from.
type expression struct {
	where string // file and panel or rule
	expr  string // PromQL, Grafana variables substituted
	panel bool   // from a dashboard panel (not a variable or a rule)
	raw   string // as written
}

// ruleFile is the part of a Prometheus rule file the tests read.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Record      string            `yaml:"record"`
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func glob(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no files match %s", pattern)
	}
	return files
}

// ruleFiles returns the files under prometheus/ that hold rule groups (not
// prometheus.yml).
func ruleFiles(t *testing.T) map[string]ruleFile {
	t.Helper()
	out := make(map[string]ruleFile)
	for _, f := range glob(t, ruleGlob) {
		if f == promConfig {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rf ruleFile
		if err := yaml.Unmarshal(b, &rf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(rf.Groups) == 0 {
			t.Fatalf("%s: no rule groups", f)
		}
		out[f] = rf
	}
	return out
}

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *datasource     `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Links []struct {
		URL string `json:"url"`
	} `json:"links"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID          int         `json:"id"`
	Type        string      `json:"type"`
	Title       string      `json:"title"`
	Datasource  *datasource `json:"datasource"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
		Overrides []struct {
			Properties []struct {
				ID    string          `json:"id"`
				Value json.RawMessage `json:"value"`
			} `json:"properties"`
		} `json:"overrides"`
	} `json:"fieldConfig"`
	GridPos *struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // rows
}

func dashboards(t *testing.T) map[string]dashboard {
	t.Helper()
	out := make(map[string]dashboard)
	for _, f := range glob(t, dashboardGlob) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[f] = d
	}
	return out
}

var labelValues = regexp.MustCompile(`^\s*label_values\(\s*(.*?)\s*,\s*\w+\s*\)\s*$`)

// expressions collects every PromQL expression of the dashboards (panel
// targets and variable queries) and of the rule files.
func expressions(t *testing.T) []expression {
	t.Helper()
	var out []expression
	for f, d := range dashboards(t) {
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				out = append(out, expression{where: fmt.Sprintf("%s: panel %q target %s", f, p.Title, tg.RefID), expr: asPromQL(tg.Expr), raw: tg.Expr, panel: true})
			}
		}
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			var q struct{ Query string }
			if err := json.Unmarshal(v.Query, &q); err != nil {
				if err := json.Unmarshal(v.Query, &q.Query); err != nil {
					t.Fatalf("%s: variable %s: query is neither an object nor a string", f, v.Name)
				}
			}
			m := labelValues.FindStringSubmatch(q.Query)
			if m == nil {
				t.Errorf("%s: variable %s: query %q is not label_values(SELECTOR, LABEL)", f, v.Name, q.Query)
				continue
			}
			out = append(out, expression{where: fmt.Sprintf("%s: variable %s", f, v.Name), expr: asPromQL(m[1]), raw: m[1]})
		}
	}
	for f, rf := range ruleFiles(t) {
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				out = append(out, expression{where: fmt.Sprintf("%s: %s%s", f, r.Alert, r.Record), expr: r.Expr, raw: r.Expr})
			}
		}
	}
	if len(out) < 20 {
		t.Fatalf("found only %d expressions", len(out))
	}
	return out
}

// TestExpressionsNameExportedMetrics fails when a dashboard or rule uses a
// metric the binary does not export (metrics.Names), a recording rule does
// not define, and Prometheus does not make itself.
func TestExpressionsNameExportedMetrics(t *testing.T) {
	names, err := metrics.Names()
	if err != nil {
		t.Fatal(err)
	}
	known := make(map[string]string)
	for _, n := range names {
		known[n] = "exported"
	}
	for _, n := range []string{"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS", "ALERTS_FOR_STATE"} {
		known[n] = "made by Prometheus"
	}
	for _, rf := range ruleFiles(t) {
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Record != "" {
					known[r.Record] = "recorded"
				}
			}
		}
	}
	used := make(map[string]bool)
	for _, e := range expressions(t) {
		sels, err := selectors(e.expr)
		if err != nil {
			t.Errorf("%s: %v in %s", e.where, err, e.raw)
			continue
		}
		if len(sels) == 0 {
			t.Errorf("%s: selects no metric: %s", e.where, e.raw)
		}
		for _, s := range sels {
			if s.name == "" {
				t.Errorf("%s: a selector without a metric name: {%s}", e.where, s.matchers)
				continue
			}
			if known[s.name] == "" {
				t.Errorf("%s: metric %s is not exported by nplus1 (nor recorded, nor Prometheus's own): %s", e.where, s.name, e.raw)
			}
			used[s.name] = true
		}
	}
	// The primary metrics are used somewhere.
	for _, n := range []string{"nplus1_findings_total", "nplus1_query_duration_seconds_bucket", "nplus1_fingerprint_info",
		"nplus1_fingerprint_findings_total", "nplus1_relayed_bytes_total", "nplus1_executions_dropped_total", "nplus1_upstream_connect_errors_total"} {
		if !used[n] {
			t.Errorf("no dashboard or rule uses %s", n)
		}
	}
}

// TestExpressionsParse has promtool parse every expression: the dashboards'
// (Grafana variables substituted) as recording rules of a scratch rule file,
// and the rule files as they are.
func TestExpressionsParse(t *testing.T) {
	promtool := promtest.Promtool(t)
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	var where []string
	for _, e := range expressions(t) {
		rules = append(rules, rule{Record: fmt.Sprintf("expr_%d", len(rules)), Expr: e.expr})
		where = append(where, e.where)
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboards", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "expressions.yml")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the %d expressions: %v\n%s\n(expr_N is the N-th of: %s)", len(rules), err, out, strings.Join(where, "; "))
	}
}

// TestPromtool runs promtool check rules, check config and test rules.
func TestPromtool(t *testing.T) {
	promtool := promtest.Promtool(t)
	var files []string
	for f := range ruleFiles(t) {
		files = append(files, f)
	}
	slices.Sort(files)
	tests := glob(t, unitTestGlob)
	for _, args := range [][]string{
		append([]string{"check", "rules"}, files...),
		{"check", "config", promConfig},
		append([]string{"test", "rules"}, tests...),
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// Every rule file is loaded by some unit test file.
	for _, f := range files {
		found := false
		for _, tf := range tests {
			b, err := os.ReadFile(tf)
			if err != nil {
				t.Fatal(err)
			}
			found = found || strings.Contains(string(b), f)
		}
		if !found {
			t.Errorf("%s has no promtool unit test (%s)", f, unitTestGlob)
		}
	}
}

// TestAlerts checks that the alerts the README promises exist.
func TestAlerts(t *testing.T) {
	var alerts []string
	for _, rf := range ruleFiles(t) {
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Alert != "" {
					alerts = append(alerts, r.Alert)
				}
			}
		}
	}
	for _, a := range []string{"NPlusOneDetected", "UnpaginatedQueryDetected", "CriticalFindingDetected", "NPlus1QueryLatencyHigh",
		"NPlus1UpstreamConnectErrors", "NPlus1ExecutionsDropped", "NPlus1ProxyDown"} {
		if !slices.Contains(alerts, a) {
			t.Errorf("no alert %s; got %v", a, alerts)
		}
	}
}

var (
	modernPanels = []string{"timeseries", "stat", "table", "heatmap"}
	uidPattern   = regexp.MustCompile(`^nplus1-[a-z0-9-]{1,32}$`)
	rangeVector  = regexp.MustCompile(`\[([^\]]*)\]`)
	rateCall     = regexp.MustCompile(`\b(i?rate)\s*\(`)
)

// TestDashboardConventions: stable uids, the datasource/job/instance
// variables, modern panel types, a unit on every panel, every query
// filtered by $job and $instance, $__rate_interval in every rate.
func TestDashboardConventions(t *testing.T) {
	uids := make(map[string]string)
	ds := dashboards(t)
	for f, d := range ds {
		if !uidPattern.MatchString(d.UID) {
			t.Errorf("%s: uid %q, want a stable nplus1-... uid", f, d.UID)
		}
		if other, dup := uids[d.UID]; dup {
			t.Errorf("%s and %s share uid %s", f, other, d.UID)
		}
		uids[d.UID] = f
		if want := d.UID + ".json"; filepath.Base(f) != want {
			t.Errorf("%s: file name does not follow the uid, want %s", f, want)
		}
		vars := make(map[string]string)
		for _, v := range d.Templating.List {
			vars[v.Name] = v.Type
			if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
				t.Errorf("%s: variable %s does not use ${datasource}", f, v.Name)
			}
		}
		for name, typ := range map[string]string{"datasource": "datasource", "job": "query", "instance": "query"} {
			if vars[name] != typ {
				t.Errorf("%s: variable %s is %q, want a %s variable", f, name, vars[name], typ)
			}
		}
		ids := make(map[int]bool)
		for _, p := range d.Panels {
			where := fmt.Sprintf("%s: panel %q", f, p.Title)
			if p.Title == "" {
				t.Errorf("%s: a panel without a title", f)
			}
			if ids[p.ID] || p.ID == 0 {
				t.Errorf("%s: id %d missing or repeated", where, p.ID)
			}
			ids[p.ID] = true
			if !slices.Contains(modernPanels, p.Type) {
				t.Errorf("%s: type %q, want one of %v", where, p.Type, modernPanels)
			}
			if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("%s: bad gridPos %+v", where, p.GridPos)
			}
			if p.FieldConfig.Defaults.Unit == "" {
				t.Errorf("%s: no unit", where)
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("%s: datasource %+v, want ${datasource}", where, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: no queries", where)
			}
			for _, tg := range p.Targets {
				where := where + " target " + tg.RefID
				if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
					t.Errorf("%s: datasource %+v, want ${datasource}", where, tg.Datasource)
				}
				for _, p := range exprProblems(tg.Expr) {
					t.Errorf("%s: %s: %s", where, p, tg.Expr)
				}
			}
		}
	}
	// Links between dashboards name existing uids.
	linkUID := regexp.MustCompile(`/d/([^/?]+)`)
	for f, d := range ds {
		for _, l := range d.Links {
			if m := linkUID.FindStringSubmatch(l.URL); m != nil && uids[m[1]] == "" {
				t.Errorf("%s: link to unknown dashboard %s", f, m[1])
			}
		}
	}
	for _, want := range []string{"nplus1-overview", "nplus1-fingerprint"} {
		if uids[want] == "" {
			t.Errorf("no dashboard with uid %s", want)
		}
	}
}

// exprProblems checks a panel query: rates over $__rate_interval, other
// ranges over $__rate_interval or $__range, and every selector filtered by
// the job and instance variables.
func exprProblems(expr string) []string {
	var out []string
	for _, m := range rangeVector.FindAllStringSubmatch(expr, -1) {
		if m[1] != "$__rate_interval" && m[1] != "$__range" {
			out = append(out, fmt.Sprintf("range [%s], want [$__rate_interval] (or [$__range] for a total over the time range)", m[1]))
		}
	}
	for _, loc := range rateCall.FindAllStringIndex(expr, -1) {
		open := strings.IndexByte(expr[loc[0]:], '(') + loc[0]
		end, err := skipGroup(expr, open)
		if err != nil {
			return append(out, err.Error())
		}
		if call := expr[loc[0]:end]; !strings.Contains(call, "[$__rate_interval]") {
			out = append(out, call+" does not use $__rate_interval")
		}
	}
	sels, err := selectors(asPromQL(expr))
	if err != nil {
		return append(out, err.Error())
	}
	for _, s := range sels {
		if !strings.Contains(s.matchers, `job=~"$job"`) || !strings.Contains(s.matchers, `instance=~"$instance"`) {
			out = append(out, fmt.Sprintf(`%s{%s} is not filtered by job=~"$job" and instance=~"$instance"`, s.name, s.matchers))
		}
	}
	return out
}

// TestCheckExprCatchesMistakes keeps the convention checks honest.
func TestCheckExprCatchesMistakes(t *testing.T) {
	for _, expr := range []string{
		`sum(rate(nplus1_queries_total{job=~"$job", instance=~"$instance"}[5m]))`,
		`sum(rate(nplus1_queries_total{job=~"$job", instance=~"$instance"}[$__range]))`,
		`sum(nplus1_client_connections_active{job=~"$job"})`,
	} {
		if len(exprProblems(expr)) == 0 {
			t.Errorf("exprProblems accepted %s", expr)
		}
	}
}
