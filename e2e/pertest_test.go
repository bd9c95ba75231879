package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nplus1/nplus1/internal/syncbuf"

	"github.com/jackc/pgx/v5"
	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/internal/pgtest"
)

// The per-test recipe of the README ("Assert per test"), run as a user runs
// it: the nplus1 command in front of PostgreSQL with --http, waited for on
// /readyz, and test suites that give each test an application_name of its
// own, then ask POST /api/flush and GET /api/findings for that application
// right after the test's statements, without sleeping. Go's testing
// package runs two tests in parallel whose flushes and DELETEs must not
// touch each other's findings; Jest runs e2e/node/pertest.test.js with
// node-postgres.

// nplus1API is the HTTP API of a running nplus1, as a test suite uses it.
type nplus1API struct {
	base   string // http://127.0.0.1:PORT
	client *http.Client
}

// do sends one request and decodes a JSON answer into out (nil: none).
func (n *nplus1API) do(t testing.TB, method, path string, q url.Values, out any) {
	t.Helper()
	req, err := http.NewRequest(method, n.base+path+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := n.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode/100 != 2 {
		t.Fatalf("%s %s?%s: %d %s", method, path, q.Encode(), res.StatusCode, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("%s %s: %v in %q", method, path, err, body)
		}
	}
}

// connect opens a connection through the proxy as application app and
// forgets what nplus1 kept of app (findings, cooldowns) before the test
// runs; the connection is closed when the test ends.
func (n *nplus1API) connect(t *testing.T, proxyAddr, app string) *pgx.Conn {
	t.Helper()
	n.do(t, "DELETE", "/api/findings", url.Values{"application": {app}}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, pgtest.URLFor(proxyAddr, pgtest.Superuser, "application_name="+url.QueryEscape(app)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// findingsOf flushes app's windows, once nplus1 has analyzed every
// statement the proxy relayed before, and returns app's findings (q adds
// filters: kind, tag).
func (n *nplus1API) findingsOf(t testing.TB, app string, q url.Values) []detector.Finding {
	t.Helper()
	n.do(t, "POST", "/api/flush", url.Values{"application": {app}}, nil)
	if q == nil {
		q = url.Values{}
	}
	q.Set("application", app)
	var fs []detector.Finding
	n.do(t, "GET", "/api/findings", q, &fs)
	return fs
}

// assertNoNPlusOne fails t when app made an N+1, naming each one.
func assertNoNPlusOne(t *testing.T, n *nplus1API, app string) {
	t.Helper()
	for _, f := range n.findingsOf(t, app, url.Values{"kind": {"n_plus_one"}}) {
		t.Errorf("N+1: %s ran %d times: %s", f.Query, f.Count, f.Suggestion)
	}
}

// nplus1Proc is the nplus1 command started by startNplus1.
type nplus1Proc struct {
	proxyAddr string
	api       *nplus1API
	stderr    *syncbuf.Buffer
}

// readyCurl is the README's readiness wait: curl retries /readyz, refused
// connections and 503 alike, until it answers 200 (30 tries a second
// apart).
var readyCurl = []string{"curl", "-fsS", "--retry", "30", "--retry-delay", "1", "--retry-connrefused"}

// startNplus1 builds the nplus1 command, starts `nplus1 proxy` in front of
// the harness's PostgreSQL with --http, and waits for it as the README's CI
// snippet does: readyCurl, started before the proxy, must end with 200. It
// is stopped (SIGTERM) when t ends.
func startNplus1(t *testing.T) *nplus1Proc {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nplus1")
	args := []string{"build", "-o", bin}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				args = append(args, "-race") // what this test run compiled already
			}
		}
	}
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), append(args, "./cmd/nplus1")...)
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go %s ./cmd/nplus1: %v\n%s", strings.Join(args, " "), err, out)
	}
	httpAddr := freeAddr(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("curl not found (the README's readiness wait uses it; scripts/deps.sh installs it): %v", err)
	}
	curl := exec.Command(readyCurl[0], append(readyCurl[1:], "http://"+httpAddr+"/readyz")...)
	var curlOut, curlErr bytes.Buffer // curl reports each refused try on stderr
	curl.Stdout, curl.Stderr = &curlOut, &curlErr
	if err := curl.Start(); err != nil {
		t.Fatal(err)
	}
	curlWaited := false
	t.Cleanup(func() {
		if !curlWaited { // the test failed before curl was done
			_ = curl.Process.Kill()
			_ = curl.Wait()
		}
	})
	cmd := exec.Command(bin, "proxy", "--upstream", h.pg.URL(pgtest.Superuser),
		"--listen", "127.0.0.1:0", "--http", httpAddr, "--log-format", "json", "--shutdown-timeout", "5s")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &nplus1Proc{stderr: &syncbuf.Buffer{}}
	addrs := make(chan [2]string, 4)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.stderr.Write([]byte(line + "\n"))
			var rec struct{ Msg, Component, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" {
				addrs <- [2]string{rec.Component, rec.Addr}
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-copied
		if err := cmd.Wait(); err != nil {
			t.Errorf("nplus1 proxy: %v\n%s", err, p.stderr)
		}
	})
	err = curl.Wait()
	curlWaited = true
	if err != nil || curlOut.String() != "ok\n" {
		t.Fatalf("%s: %v %q %s; nplus1:\n%s", strings.Join(curl.Args, " "), err, curlOut.String(), curlErr.String(), p.stderr)
	}
	for deadline := time.After(30 * time.Second); p.proxyAddr == ""; {
		select {
		case a := <-addrs:
			if a[0] == "proxy" {
				p.proxyAddr = a[1]
			}
		case <-deadline:
			t.Fatalf("nplus1 proxy did not log its address within 30s:\n%s", p.stderr)
		}
	}
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	p.api = &nplus1API{base: "http://" + httpAddr, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
	return p
}

// freeAddr returns a loopback address with a port nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

const openOrders = "SELECT id, user_id FROM orders WHERE status = $1 ORDER BY id LIMIT 20"

// orderUsers lists 20 open orders, then loads each order's user with a
// query of its own (the N+1); pause, when set, is called half-way through
// the loop. The lookups carry a sqlcommenter test tag.
func orderUsers(ctx context.Context, c *pgx.Conn, test string, pause func()) (int, error) {
	var users []int64
	rows, err := c.Query(ctx, openOrders, "open")
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		var id, user int64
		if err := rows.Scan(&id, &user); err != nil {
			return 0, err
		}
		users = append(users, user)
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	lookup := "SELECT name, email FROM users WHERE id = $1 /*test='" + url.QueryEscape(test) + "'*/"
	for i, u := range users {
		if i == len(users)/2 && pause != nil {
			pause()
		}
		var name, email string
		if err := c.QueryRow(ctx, lookup, u).Scan(&name, &email); err != nil {
			return 0, err
		}
	}
	return len(users), nil
}

// orderUsersFixed is orderUsers with the users loaded in one query.
func orderUsersFixed(ctx context.Context, c *pgx.Conn) error {
	var users []int64
	rows, err := c.Query(ctx, openOrders, "open")
	if err != nil {
		return err
	}
	for rows.Next() {
		var id, user int64
		if err := rows.Scan(&id, &user); err != nil {
			return err
		}
		users = append(users, user)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	_, err = c.Exec(ctx, "SELECT id, name, email FROM users WHERE id = ANY($1)", users)
	return err
}

// step is a rendezvous of the two parallel tests of round 1.
type step chan struct{}

func (s step) wait(t *testing.T, what string) {
	t.Helper()
	select {
	case <-s:
	case <-time.After(60 * time.Second):
		t.Fatalf("the other parallel test did not %s within 60s", what)
	}
}

func TestPerTestIsolation(t *testing.T) {
	n := startNplus1(t)

	t.Run("go", func(t *testing.T) { perTestGo(t, n) })
	t.Run("jest", func(t *testing.T) { perTestJest(t, n) })
}

// perTestGo runs two tests in parallel, each as its own application, three
// rounds each: the N+1 must be found once per round with every one of its
// 20 lookups, the fixed form never. In round 1 they meet: the fixed test
// flushes and DELETEs its own scope while the N+1's loop is half-way (its
// window must stay open, or its finding would count 10 lookups), and again
// once the N+1 is flushed (its finding must stay).
func perTestGo(t *testing.T, n *nplus1Proc) {
	half, fixedFlushed, loopFlushed, fixedCleared := make(step), make(step), make(step), make(step)
	meet := true
	if f := flag.Lookup("test.parallel"); f != nil {
		if p, err := strconv.Atoi(f.Value.String()); err == nil && p < 2 {
			meet = false
			t.Logf("-parallel %d: the two tests cannot meet; they run one after the other", p)
		}
	}
	const rounds = 3
	t.Run("checkout", func(t *testing.T) {
		t.Parallel()
		for round := range rounds {
			app := fmt.Sprintf("%s/%d", t.Name(), round)
			c := n.api.connect(t, n.proxyAddr, app)
			var pause func()
			if round == 0 && meet {
				pause = func() {
					close(half)
					fixedFlushed.wait(t, "flush its scope")
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			lookups, err := orderUsers(ctx, c, t.Name(), pause)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			fs := n.api.findingsOf(t, app, url.Values{"kind": {"n_plus_one"}})
			if round == 0 && meet {
				close(loopFlushed)
				fixedCleared.wait(t, "clear its scope")
				fs = n.api.findingsOf(t, app, url.Values{"kind": {"n_plus_one"}})
			}
			if len(fs) != 1 || fs[0].Count != lookups || fs[0].Connection.ApplicationName != app {
				t.Fatalf("round %d: %d N+1 findings %+v, want one of %s with all %d lookups", round, len(fs), fs, app, lookups)
			}
			tagged := n.api.findingsOf(t, app, url.Values{"tag": {"test:" + t.Name()}})
			if len(tagged) != 1 || tagged[0].Fingerprint != fs[0].Fingerprint {
				t.Errorf("round %d: by its test tag: %+v, want the N+1", round, tagged)
			}
		}
	})
	t.Run("catalog", func(t *testing.T) {
		t.Parallel()
		for round := range rounds {
			app := fmt.Sprintf("%s/%d", t.Name(), round)
			c := n.api.connect(t, n.proxyAddr, app)
			if round == 0 && meet {
				half.wait(t, "start its loop")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := orderUsersFixed(ctx, c)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			assertNoNPlusOne(t, n.api, app)
			if fs := n.api.findingsOf(t, app, nil); len(fs) != 0 {
				t.Errorf("round %d: findings %+v, want none", round, fs)
			}
			if round == 0 && meet {
				n.api.do(t, "DELETE", "/api/findings", url.Values{"application": {app}}, nil)
				close(fixedFlushed)
				loopFlushed.wait(t, "flush its loop")
				n.api.do(t, "DELETE", "/api/findings", url.Values{"application": {app}}, nil)
				n.api.do(t, "POST", "/api/flush", url.Values{"application": {app}}, nil)
				close(fixedCleared)
			}
		}
	})
}

// jestReport is what jest --json writes.
type jestReport struct {
	NumPassedTests int
	NumFailedTests int
	TestResults    []struct {
		AssertionResults []struct {
			FullName string
			Status   string
		}
	}
}

// perTestJest runs e2e/node/pertest.test.js with Jest against the proxy and
// checks it passed, and that its N+1 test's finding is where it says.
func perTestJest(t *testing.T, n *nplus1Proc) {
	ensureNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	report := filepath.Join(t.TempDir(), "jest.json")
	cmd := exec.CommandContext(ctx, "node", "node_modules/jest/bin/jest.js", "--ci", "--json", "--outputFile="+report, "pertest.test.js")
	cmd.Dir = nodeDir
	cmd.Env = append(os.Environ(),
		"DATABASE_URL="+fmt.Sprintf("postgres://%s@%s/%s", pgtest.Superuser, n.proxyAddr, pgtest.Database),
		"NPLUS1_API="+n.api.base)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("jest: %v\n%s", err, out)
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var r jestReport
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.NumPassedTests != 2 || r.NumFailedTests != 0 {
		t.Fatalf("jest: %d passed, %d failed; want 2 passed\n%s", r.NumPassedTests, r.NumFailedTests, out)
	}
	// The N+1 test's finding is stored under its name: the suite ran
	// through the proxy and asserted on what nplus1 found.
	var loopTest string
	for _, tr := range r.TestResults {
		for _, a := range tr.AssertionResults {
			if strings.HasSuffix(a.FullName, "(N+1)") {
				loopTest = a.FullName
			}
		}
	}
	if fs := n.api.findingsOf(t, loopTest, url.Values{"kind": {"n_plus_one"}}); loopTest == "" || len(fs) != 1 {
		t.Errorf("after jest, the N+1 test %q has %d N+1 findings, want 1", loopTest, len(fs))
	}
}
