package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nplus1/nplus1/internal/pgtest"
	"github.com/nplus1/nplus1/metrics"
)

// TestVersion: "nplus1 --version", "-version" and "version" print the
// version, the commit, the Go version and pg_query's, on stdout.
func TestVersion(t *testing.T) {
	bi := metrics.Build()
	for _, arg := range []string{"--version", "-version", "version"} {
		stdout, stderr, err := runArgs(t, nil, arg)
		if err != nil || stderr != "" {
			t.Fatalf("%s: error %v, stderr %q", arg, err, stderr)
		}
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		want := []string{
			"nplus1 " + bi.Version,
			"  commit:   " + bi.Revision,
			"  go:       " + runtime.Version(),
			"  pg_query: " + bi.PgQueryVersion + " (pg_query_go, the SQL parser behind the fingerprints)",
		}
		if strings.Join(lines, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: got\n%s\nwant\n%s", arg, stdout, strings.Join(want, "\n"))
		}
	}
	if _, stderr, err := runArgs(t, nil, "versions"); exitCode(err) != exitUsage || !strings.Contains(stderr, `unknown command "versions"`) {
		t.Errorf("versions: exit %d, %q; want a usage error", exitCode(err), stderr)
	}
	if top, _, _ := runArgs(t, nil, "--help"); !strings.Contains(top, "nplus1 version") {
		t.Errorf("--help does not mention nplus1 version:\n%s", top)
	}
}

// TestVersionOfTheBinary builds nplus1 as a user does, with the commit
// stamped, and checks what --version says against git and go.mod: test
// binaries carry neither the commit nor their dependencies' versions.
func TestVersionOfTheBinary(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is needed to check the commit: %v", err)
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("git rev-parse --show-toplevel: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(strings.TrimSpace(string(top)), ".git")); err != nil || !fi.IsDir() {
		// The go command stamps the commit only in a checkout whose .git
		// is a directory: not in a git worktree or a submodule.
		t.Skip("this checkout's .git is not a directory (a git worktree?): the go command does not stamp the commit here")
	}
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	bin := filepath.Join(t.TempDir(), "nplus1")
	args := []string{"build", "-buildvcs=true", "-o", bin}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				args = append(args, "-race") // reuse what this test run compiled
			}
		}
	}
	args = append(args, ".")
	if out, err := exec.Command(goCmd, args...).CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("nplus1 --version: %v", err)
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD: %v", err)
	}
	pgq, err := exec.Command(goCmd, "list", "-m", "-f", "{{.Version}}", "github.com/pganalyze/pg_query_go/v6").Output()
	if err != nil {
		t.Fatalf("go list -m pg_query_go: %v", err)
	}
	got := string(out)
	commit := strings.TrimSpace(string(head))
	for _, want := range []string{
		"\n  go:       " + runtime.Version() + "\n",
		"\n  pg_query: " + strings.TrimSpace(string(pgq)) + " (",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("--version lacks %q:\n%s", want, got)
		}
	}
	if !strings.Contains(got, "\n  commit:   "+commit+"\n") && !strings.Contains(got, "\n  commit:   "+commit+"-dirty\n") {
		t.Errorf("--version does not name commit %s (or %s-dirty):\n%s", commit, commit, got)
	}
	if first, _, _ := strings.Cut(got, "\n"); first == "nplus1 unknown" || !strings.HasPrefix(first, "nplus1 ") {
		t.Errorf("--version: first line %q, want nplus1 and a version", first)
	}
}

// TestKubernetesServiceLinks sets, in the process environment, the
// variables Kubernetes gives every pod of a namespace with a Service named
// nplus1, and runs replay (whose --port is NPLUS1_PORT) and the proxy:
// both work, replay with one warning that names the variable it left out,
// and a real variable with a bad value is still an error.
func TestKubernetesServiceLinks(t *testing.T) {
	for k, v := range kubernetesLinks {
		t.Setenv(k, v)
	}
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"replay", "--progress", "off", fixture}, os.Getenv, &stdout, &stderr)
	if err != nil {
		t.Fatalf("replay with the service links: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "7 statements on 1 connection,") {
		t.Errorf("replay did not read the capture on port 5432:\n%s", stdout.String())
	}
	warn := "ignoring environment variables that are Kubernetes service links"
	if n := strings.Count(stderr.String(), warn); n != 1 || !strings.Contains(stderr.String(), "level=WARN") ||
		!strings.Contains(stderr.String(), "variables=NPLUS1_PORT ") || strings.Contains(stderr.String(), "10.0.0.5") {
		t.Errorf("want one warning naming NPLUS1_PORT (not its value), got %d in:\n%s", n, stderr.String())
	}

	t.Setenv("NPLUS1_PORT", "abc")
	stdout.Reset()
	stderr.Reset()
	err = run(context.Background(), []string{"replay", "--progress", "off", fixture}, os.Getenv, &stdout, &stderr)
	if exitCode(err) != exitUsage || !strings.Contains(stderr.String(),
		`--port (from NPLUS1_PORT): "abc" is not a TCP port; want numbers from 1 to 65535, comma-separated, such as 5432,6432`) {
		t.Errorf("NPLUS1_PORT=abc: exit %d, stderr %q; want exit 2 naming the variable and valid values", exitCode(err), stderr.String())
	}
	t.Setenv("NPLUS1_PORT", kubernetesLinks["NPLUS1_PORT"])

	// The proxy has no --port: the links are not its business, and it serves.
	env := map[string]string{"NPLUS1_LOG_FORMAT": "json", "NPLUS1_UPSTREAM": "127.0.0.1:" + strconv.Itoa(closedPort(t))}
	maps.Copy(env, kubernetesLinks)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	_, logs, done := startCommand(t, ctx, []string{"proxy", "--listen", "127.0.0.1:0"}, env, &stdout, "proxy")
	stop()
	if err := <-done; err != nil {
		t.Errorf("proxy with the service links: %v\n%s", err, logs)
	}
	if strings.Contains(logs.String(), warn) {
		t.Errorf("the proxy warned about variables it does not read:\n%s", logs)
	}
	env["NPLUS1_MAX_CONNECTIONS"] = "lots"
	_, errOut, err := runArgs(t, env, "proxy", "--listen", "127.0.0.1:0")
	if exitCode(err) != exitUsage || !strings.Contains(errOut, `invalid value "lots" for NPLUS1_MAX_CONNECTIONS (--max-connections): not a whole number; use digits`) {
		t.Errorf("NPLUS1_MAX_CONNECTIONS=lots: exit %d, %q; want a usage error", exitCode(err), errOut)
	}
}

// closedPort returns a TCP port on 127.0.0.1 that nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// TestUpstreamCheckedAtStartup: the proxy dials its upstream once at
// startup. Down, it says so in one warning that names host:port and the
// kind of failure, never the connection string's password, and serves
// anyway; up (a libpq keyword/value string, through to a real query), it
// does not warn.
func TestUpstreamCheckedAtStartup(t *testing.T) {
	const plant = "zqStartupSecret"
	port := closedPort(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	upstream := "host=127.0.0.1 port=" + strconv.Itoa(port) + " user=bob password=" + plant + " sslmode=disable"
	var console bytes.Buffer
	addrs, logs, done := startCommand(t, ctx, []string{"proxy", "--listen", "127.0.0.1:0", "--upstream", upstream},
		map[string]string{"NPLUS1_LOG_FORMAT": "json"}, &console, "proxy")
	deadline := time.Now().Add(10 * time.Second)
	for len(logs.records(t, upstreamDownMsg)) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	recs := logs.records(t, upstreamDownMsg)
	if len(recs) != 1 {
		t.Fatalf("got %d %q records, want 1:\n%s", len(recs), upstreamDownMsg, logs)
	}
	want := "127.0.0.1:" + strconv.Itoa(port)
	if r := recs[0]; r["level"] != "WARN" || r["upstream"] != want ||
		r["err"] != "cannot connect to upstream "+want+": connection refused" {
		t.Errorf("warning %v, want level WARN, upstream %s and err cannot connect to upstream %s: connection refused", r, want, want)
	}
	// It listens all the same: a client is told why it cannot go through.
	_, err := pgx.Connect(ctx, pgtest.URLFor(addrs["proxy"], pgtest.Superuser))
	if err == nil || !strings.Contains(err.Error(), "cannot connect to upstream "+want+": connection refused") {
		t.Errorf("client through a proxy whose upstream is down: %v", err)
	}
	outputs := map[string]string{}
	stopCommand(t, stop, done, logs, &console, "", outputs)
	noPlant(t, outputs, plant, "password")

	pg, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(pg.Stop)
	ctx, stop = context.WithCancel(context.Background())
	defer stop()
	upstream = "host=" + pg.Host + " port=" + strconv.Itoa(pg.Port) + " user=bob password=" + plant + " sslmode=disable"
	console.Reset()
	addrs, logs, done = startCommand(t, ctx, []string{"proxy", "--listen", "127.0.0.1:0", "--upstream", upstream, "--log-level", "debug"},
		map[string]string{"NPLUS1_LOG_FORMAT": "json"}, &console, "proxy")
	deadline = time.Now().Add(10 * time.Second)
	for len(logs.records(t, "the upstream answers")) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if recs := logs.records(t, "the upstream answers"); len(recs) != 1 || recs[0]["upstream"] != pg.Addr() {
		t.Errorf("no debug line saying the upstream %s answers:\n%s", pg.Addr(), logs)
	}
	c, err := pgx.Connect(ctx, pgtest.URLFor(addrs["proxy"], pgtest.Superuser))
	if err != nil {
		t.Fatalf("connect through the proxy to a keyword/value upstream: %v", err)
	}
	var one int
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Errorf("SELECT 1 through the proxy: %d, %v", one, err)
	}
	c.Close(ctx)
	outputs = map[string]string{}
	stopCommand(t, stop, done, logs, &console, "", outputs)
	if strings.Contains(outputs["logs"], upstreamDownMsg) || strings.Contains(outputs["logs"], `"level":"WARN"`) {
		t.Errorf("a warning with the upstream up:\n%s", outputs["logs"])
	}
	noPlant(t, outputs, plant, "password")
}

// TestColor: --color auto colors a terminal only (not /dev/null, a
// character device, nor a terminal with NO_COLOR set), always colors
// anything (CI logs), never nothing.
func TestColor(t *testing.T) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	tty := openTerminal(t)
	var buf bytes.Buffer
	noColor := mapEnv(map[string]string{"NO_COLOR": "1"})
	for _, tc := range []struct {
		mode   string
		w      io.Writer
		name   string
		getenv func(string) string
		want   bool
	}{
		{colorAuto, null, "/dev/null", mapEnv(nil), false},
		{colorAuto, tty, "a terminal", mapEnv(nil), true},
		{colorAuto, tty, "a terminal with NO_COLOR", noColor, false},
		{colorAuto, &buf, "a buffer", mapEnv(nil), false},
		{colorAlways, null, "/dev/null", mapEnv(nil), true},
		{colorAlways, &buf, "a buffer with NO_COLOR", noColor, true},
		{colorNever, tty, "a terminal", mapEnv(nil), false},
	} {
		if got := useColor(tc.mode, tc.w, tc.getenv); got != tc.want {
			t.Errorf("--color %s on %s: %v, want %v", tc.mode, tc.name, got, tc.want)
		}
	}

	// Through replay's console: the title of the N+1 in yellow (a
	// warning), or no escape at all.
	const yellow = "\x1b[1;33mN+1 query\x1b[0m"
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want bool
	}{
		{[]string{"--color", "always"}, nil, true},
		{nil, map[string]string{"NPLUS1_COLOR": "always", "NO_COLOR": "1"}, true},
		{[]string{"--color", "never"}, map[string]string{"NPLUS1_COLOR": "always"}, false},
		{nil, nil, false}, // auto, and stdout is a buffer
	} {
		args := append(append([]string{"replay", "--progress", "off"}, tc.args...), fixture)
		stdout, stderr, err := runArgs(t, tc.env, args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, stderr)
		}
		if got := strings.Contains(stdout, yellow); got != tc.want || !tc.want && strings.Contains(stdout, "\x1b[") {
			t.Errorf("%v with %v: colored %v, want %v:\n%q", tc.args, tc.env, got, tc.want, stdout)
		}
	}
}

// TestEveryFlagSaysWhatIsValid gives every flag of every command a value no
// flag takes, and checks that each refusal says what a valid value looks
// like.
func TestEveryFlagSaysWhatIsValid(t *testing.T) {
	hints := []string{"use ", "want ", "such as", "kinds:"}
	refused := 0
	for _, c := range commands() {
		fs := newFlagSet(c.name)
		c.setup(fs)
		for _, name := range fs.order {
			fs := newFlagSet(c.name)
			c.setup(fs)
			_, err := fs.parse([]string{"--" + name + "=5x!"}, mapEnv(nil))
			if err == nil || name == "config" {
				continue // a string, checked when used; a file that is not there
			}
			if errors.Is(err, flag.ErrHelp) {
				t.Fatalf("%s --%s: help", c.name, name)
			}
			refused++
			msg := err.Error()
			ok := false
			for _, h := range hints {
				ok = ok || strings.Contains(msg, h)
			}
			if !ok || strings.HasSuffix(msg, "parse error") {
				t.Errorf("nplus1 %s --%s=5x!: %q does not say what a valid value looks like", c.name, name, msg)
			}
		}
	}
	if refused < 20 {
		t.Errorf("only %d flags refused 5x!; the test reaches too few", refused)
	}
}
