// Package promtest finds Prometheus's tools and runs a throwaway Prometheus
// server for tests: loopback only, a random port, its data in a temporary
// directory, killed when the test ends.
//
// The binaries come from the Debian package prometheus (promtool and
// prometheus, on PATH or in /usr/bin). A missing binary is a failure, never a
// skip: run scripts/deps.sh (scripts/test.sh does), which installs it.
package promtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nplus1/nplus1/internal/syncbuf"
)

// find returns the path of a binary of the prometheus package.
func find(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p := filepath.Join("/usr/bin", name); isExecutable(p) {
		return p
	}
	t.Fatalf("%s not found: install the Debian package prometheus (scripts/deps.sh does)", name)
	return ""
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// Promtool returns the path of promtool.
func Promtool(t testing.TB) string { t.Helper(); return find(t, "promtool") }

// Options configure a Server.
type Options struct {
	// Job is the scrape job's name (default "nplus1"), and Targets its
	// host:port targets, scraped at /metrics.
	Job     string
	Targets []string
	// RuleFiles are rule files, by absolute path.
	RuleFiles []string
	// Interval is the scrape and rule evaluation interval (default 1s).
	Interval time.Duration
}

// Server is a running Prometheus.
type Server struct {
	// URL is its base URL, http://127.0.0.1:PORT.
	URL string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	log  *syncbuf.Buffer
}

// Start runs Prometheus and waits until it is ready (30 s at most). The
// test's cleanup kills it and waits for it to exit.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := find(t, "prometheus")
	if opts.Job == "" {
		opts.Job = "nplus1"
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	dir := t.TempDir()
	config := map[string]any{
		"global": map[string]any{
			"scrape_interval":     opts.Interval.String(),
			"scrape_timeout":      opts.Interval.String(),
			"evaluation_interval": opts.Interval.String(),
		},
		"rule_files": opts.RuleFiles,
		"scrape_configs": []any{map[string]any{
			"job_name":       opts.Job,
			"static_configs": []any{map[string]any{"targets": opts.Targets}},
		}},
	}
	cfg, err := json.Marshal(config) // JSON is YAML
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s := &Server{URL: "http://" + addr, done: make(chan struct{}), log: &syncbuf.Buffer{}}
	s.cmd = exec.Command(bin,
		"--config.file="+cfgFile,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=info",
	)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(s.URL + "/-/ready")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-s.done:
			t.Fatalf("prometheus exited before it was ready:\n%s", s.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 30s:\n%s", s.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Log returns what Prometheus logged so far.
func (s *Server) Log() string { return s.log.String() }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// get fetches an API path and decodes the data field of a successful answer.
func (s *Server) get(ctx context.Context, path string, data any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		return fmt.Errorf("GET %s: %s: %w", path, res.Status, err)
	}
	if body.Status != "success" {
		return fmt.Errorf("GET %s: %s: %s", path, res.Status, body.Error)
	}
	return json.Unmarshal(body.Data, data)
}

// Sample is one element of an instant vector.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// Query evaluates an instant query now.
func (s *Server) Query(ctx context.Context, expr string) ([]Sample, error) {
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := s.get(ctx, "/api/v1/query?query="+url.QueryEscape(expr), &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: got a %s, want a vector", expr, data.ResultType)
	}
	out := make([]Sample, 0, len(data.Result))
	for _, r := range data.Result {
		str, ok := r.Value[1].(string)
		if !ok {
			return nil, fmt.Errorf("query %s: value %v is not a string", expr, r.Value[1])
		}
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: %w", expr, err)
		}
		out = append(out, Sample{Metric: r.Metric, Value: v})
	}
	return out, nil
}

// Alert is one active alert.
type Alert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"` // pending or firing
}

// Alerts returns the active (pending or firing) alerts.
func (s *Server) Alerts(ctx context.Context) ([]Alert, error) {
	var data struct {
		Alerts []Alert `json:"alerts"`
	}
	err := s.get(ctx, "/api/v1/alerts", &data)
	return data.Alerts, err
}

// Target is one scrape target's state.
type Target struct {
	ScrapeURL string `json:"scrapeUrl"`
	Health    string `json:"health"` // up, down or unknown
	LastError string `json:"lastError"`
}

// Targets returns the active targets.
func (s *Server) Targets(ctx context.Context) ([]Target, error) {
	var data struct {
		ActiveTargets []Target `json:"activeTargets"`
	}
	err := s.get(ctx, "/api/v1/targets", &data)
	return data.ActiveTargets, err
}

// RuleGroupHealth returns an error naming every rule that Prometheus could
// not evaluate (health "err").
func (s *Server) RuleGroupHealth(ctx context.Context) error {
	var data struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := s.get(ctx, "/api/v1/rules", &data); err != nil {
		return err
	}
	var errs []string
	n := 0
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health == "err" {
				errs = append(errs, fmt.Sprintf("%s/%s: %s", g.Name, r.Name, r.LastError))
			}
		}
	}
	if n == 0 {
		return errors.New("no rules loaded")
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}
