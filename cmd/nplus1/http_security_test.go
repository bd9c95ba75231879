package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nplus1/nplus1/internal/syncbuf"

	"github.com/nplus1/nplus1/analyzer"
	"github.com/nplus1/nplus1/detector"
)

// The HTTP server's access rules, on a real server and real requests: the
// Host check of a loopback bind (DNS rebinding), the cross-origin check of
// the findings API, the bearer token, the bound on findings streams, and
// the warning of a bind beyond loopback.

// testHTTP is a server started by startTestHTTP.
type testHTTP struct {
	base     string // http://127.0.0.1:PORT
	port     string
	store    *analyzer.Store
	logs     *syncbuf.Buffer
	upstream *error // what /readyz's check returns
}

// startTestHTTP serves the routes on addr with d (a findings store, a
// /metrics stub and a logger are added) until the test ends.
func startTestHTTP(t *testing.T, addr string, d httpDeps) *testHTTP {
	t.Helper()
	th := &testHTTP{store: analyzer.NewStore(0), logs: &syncbuf.Buffer{}, upstream: new(error)}
	d.checkUpstream = func(context.Context) error { return *th.upstream }
	d.findings = th.store
	d.metrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeText(w, http.StatusOK, "nplus1_up 1\n")
	})
	d.logger = slog.New(slog.NewJSONHandler(th.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	hs, err := listenHTTP(context.Background(), addr, d)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- hs.serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hs.shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	_, th.port, _ = net.SplitHostPort(hs.ln.Addr().String())
	th.base = "http://127.0.0.1:" + th.port
	return th
}

// testRequest is one request of a table, with what it forges.
type testRequest struct {
	method, path string
	host         string            // "" keeps 127.0.0.1:PORT
	header       map[string]string // "{port}" is replaced by the server's port
}

// do sends r on a fresh connection and returns the status, body and
// response headers.
func (th *testHTTP) do(t *testing.T, r testRequest) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(r.method, th.base+r.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.host != "" {
		req.Host = strings.ReplaceAll(r.host, "{port}", th.port)
	}
	for k, v := range r.header {
		req.Header.Set(k, strings.ReplaceAll(v, "{port}", th.port))
	}
	timeout := 10 * time.Second
	if strings.HasSuffix(r.path, "/stream") {
		timeout = 3 * time.Second // a refusal comes at once; an open stream never ends
	}
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body), res.Header
}

// addFinding stores one finding, to see whether a DELETE cleared it.
func (th *testHTTP) addFinding() {
	th.store.Finding(&detector.Finding{Kind: detector.KindNPlusOne, Time: time.Now()})
}

func TestHTTPHostOnLoopback(t *testing.T) {
	th := startTestHTTP(t, "127.0.0.1:0", httpDeps{})
	if strings.Contains(th.logs.String(), `"level":"WARN"`) {
		t.Errorf("a loopback bind logged a warning:\n%s", th.logs)
	}
	allowed := []string{
		"", // 127.0.0.1:PORT
		"127.0.0.1", "127.0.0.1:1", "127.1.2.3:{port}", "localhost", "localhost:{port}", "LocalHost.:8080",
		"app.localhost:3000", "[::1]", "[::1]:{port}", "[::ffff:127.0.0.1]:{port}",
	}
	refused := []string{
		"evil.example", "evil.example:{port}", "0.0.0.0:{port}", "192.168.1.10:{port}", "[::]:{port}",
		"127.0.0.1.nip.io:{port}", "localhost.evil.example", "[fe80::1]:{port}",
	}
	for _, path := range []string{"/api/findings", "/api/findings?kind=n_plus_one", "/metrics", "/readyz"} {
		for _, host := range allowed {
			if code, body, _ := th.do(t, testRequest{method: "GET", path: path, host: host}); code != http.StatusOK {
				t.Errorf("GET %s with Host %q: got %d %q, want 200", path, host, code, body)
			}
		}
		for _, host := range refused {
			code, body, _ := th.do(t, testRequest{method: "GET", path: path, host: host})
			if code != http.StatusForbidden || !strings.Contains(body, "Host") {
				t.Errorf("GET %s with Host %q: got %d %q, want 403 about the Host", path, host, code, body)
			}
		}
	}
	// A rebound page cannot clear the findings either.
	th.addFinding()
	if code, _, _ := th.do(t, testRequest{method: "DELETE", path: "/api/findings", host: "evil.example:{port}"}); code != http.StatusForbidden {
		t.Errorf("DELETE with a foreign Host: got %d, want 403", code)
	}
	if n := len(th.store.List("", time.Time{})); n != 1 {
		t.Errorf("after a refused DELETE the store holds %d findings, want 1", n)
	}
	// /healthz answers whatever the Host: it tells nothing.
	if code, _, _ := th.do(t, testRequest{method: "GET", path: "/healthz", host: "evil.example"}); code != http.StatusOK {
		t.Errorf("GET /healthz with a foreign Host: got %d, want 200", code)
	}
	logs := th.logs.String()
	if !strings.Contains(logs, `"msg":"refused an HTTP request`) || !strings.Contains(logs, `"host":"evil.example"`) {
		t.Errorf("want a log line about the refused Host, got:\n%s", logs)
	}
	if n := strings.Count(logs, `"msg":"refused an HTTP request`); n != 1 {
		t.Errorf("got %d refusal log lines, want 1 (at most one per %v)", n, refusalLogEvery)
	}
}

// The host --http names is allowed besides the loopback names, when it
// resolves to loopback (a machine's own name often does, to 127.0.1.1).
func TestHTTPHostAllowed(t *testing.T) {
	d := httpDeps{loopbackOnly: true, boundHost: "devbox"}
	for host, want := range map[string]bool{
		"devbox:9632": true, "DEVBOX.": true, "devbox.example": false, "localhost": true, "[::1]:1": true,
		"":           true, // HTTP/1.0 without Host: not a browser
		"other:9632": false,
	} {
		if got := d.hostAllowed(host); got != want {
			t.Errorf("hostAllowed(%q) = %v, want %v", host, got, want)
		}
	}
	if !(httpDeps{}).hostAllowed("anything.example") {
		t.Error("beyond loopback every Host must be allowed")
	}
}

func TestHTTPBeyondLoopback(t *testing.T) {
	th := startTestHTTP(t, "0.0.0.0:0", httpDeps{})
	logs := th.logs.String()
	if !strings.Contains(logs, `"level":"WARN"`) || !strings.Contains(logs, "reachable from the network") ||
		!strings.Contains(logs, "--http-token") || !strings.Contains(logs, "127.0.0.1:PORT") {
		t.Errorf("a bind beyond loopback logged no warning that suggests --http-token or loopback:\n%s", logs)
	}
	// Scrapers and clients reach such a server by any name or address.
	for _, path := range []string{"/metrics", "/api/findings", "/readyz", "/healthz"} {
		for _, host := range []string{"10.0.0.7:{port}", "nplus1.monitoring.svc:{port}", "localhost"} {
			if code, body, _ := th.do(t, testRequest{method: "GET", path: path, host: host}); code != http.StatusOK {
				t.Errorf("GET %s with Host %q: got %d %q, want 200", path, host, code, body)
			}
		}
	}
	// Cross-origin requests are refused all the same.
	code, _, _ := th.do(t, testRequest{method: "DELETE", path: "/api/findings", host: "10.0.0.7:{port}",
		header: map[string]string{"Origin": "http://evil.example"}})
	if code != http.StatusForbidden {
		t.Errorf("cross-origin DELETE beyond loopback: got %d, want 403", code)
	}

	// With a token, the line says so, and is no warning.
	th = startTestHTTP(t, "0.0.0.0:0", httpDeps{token: "tok-beyond"})
	logs = th.logs.String()
	if strings.Contains(logs, `"level":"WARN"`) || !strings.Contains(logs, "needs the bearer token") {
		t.Errorf("with --http-token: want an info line about the token and no warning, got:\n%s", logs)
	}
	if strings.Contains(logs, "tok-beyond") {
		t.Errorf("the log holds the token:\n%s", logs)
	}
}

func TestHTTPCrossOrigin(t *testing.T) {
	th := startTestHTTP(t, "127.0.0.1:0", httpDeps{})
	refused := []map[string]string{
		{"Origin": "http://evil.example"},
		{"Origin": "http://localhost:3000"}, // another port is another origin
		{"Origin": "null"},                  // sandboxed frames, file: pages
		{"Origin": "http://127.0.0.1:{port}.evil.example"},
		{"Sec-Fetch-Site": "cross-site"},
		{"Sec-Fetch-Site": "same-site"},
		{"Origin": "http://127.0.0.1:{port}", "Sec-Fetch-Site": "cross-site"},
	}
	allowed := []map[string]string{
		nil, // not a browser: curl, a test suite
		{"Origin": "http://127.0.0.1:{port}"},
		{"Origin": "HTTP://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"},
		{"Sec-Fetch-Site": "none"}, // typed in the address bar
	}
	for _, route := range []struct{ method, path string }{
		{"GET", "/api/findings"}, {"DELETE", "/api/findings"}, {"GET", "/api/findings/stream"},
	} {
		for _, h := range refused {
			th.addFinding()
			code, body, _ := th.do(t, testRequest{method: route.method, path: route.path, header: h})
			if code != http.StatusForbidden || !strings.Contains(body, "cross-origin") {
				t.Errorf("%s %s with %v: got %d %q, want 403 cross-origin", route.method, route.path, h, code, body)
			}
			if route.method == "DELETE" && len(th.store.List("", time.Time{})) == 0 {
				t.Errorf("a refused DELETE with %v cleared the findings", h)
			}
		}
		if route.path == "/api/findings/stream" {
			continue // the allowed stream is tested below: it does not end
		}
		for _, h := range allowed {
			code, body, _ := th.do(t, testRequest{method: route.method, path: route.path, header: h})
			if code != http.StatusOK && code != http.StatusNoContent {
				t.Errorf("%s %s with %v: got %d %q, want it answered", route.method, route.path, h, code, body)
			}
		}
	}
	// A same-origin stream opens.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if res, err := openStream(ctx, th, map[string]string{"Origin": "http://127.0.0.1:" + th.port}); err != nil {
		t.Errorf("same-origin stream: %v", err)
	} else {
		res.Body.Close()
	}
	// /metrics and the probes are for scrapers and kubelets; a browser
	// cannot read them from another origin (no CORS headers).
	for _, path := range []string{"/metrics", "/readyz", "/healthz"} {
		code, _, h := th.do(t, testRequest{method: "GET", path: path, header: map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}})
		if code != http.StatusOK || h.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("GET %s from another origin: got %d (Access-Control-Allow-Origin %q), want 200 without CORS", path, code, h.Get("Access-Control-Allow-Origin"))
		}
	}
	// A CORS preflight is not answered, so a browser never sends the DELETE.
	code, _, h := th.do(t, testRequest{method: "OPTIONS", path: "/api/findings", header: map[string]string{
		"Origin": "http://evil.example", "Access-Control-Request-Method": "DELETE",
	}})
	if code < 400 || h.Get("Access-Control-Allow-Origin") != "" || h.Get("Access-Control-Allow-Methods") != "" {
		t.Errorf("preflight: got %d with %v, want an error without CORS headers", code, h)
	}
}

func TestHTTPToken(t *testing.T) {
	const token = "s3cret-T0ken_for-tests"
	th := startTestHTTP(t, "127.0.0.1:0", httpDeps{token: token})
	*th.upstream = errors.New("dial tcp 10.1.2.3:5432: connect: connection refused")
	wrong := []string{
		"", "Bearer", "Bearer ", "Bearer nope", "Bearer " + token[:len(token)-1], "Bearer " + token + "x",
		"Bearer x" + token, "Basic " + token, token, "Bearer " + strings.ToUpper(token), "Token " + token,
	}
	right := []string{"Bearer " + token, "bearer " + token, "BEARER  " + token}
	for _, route := range []struct{ method, path string }{
		{"GET", "/api/findings"}, {"DELETE", "/api/findings"}, {"GET", "/api/findings/stream"}, {"GET", "/metrics"},
	} {
		for _, auth := range wrong {
			th.addFinding()
			code, body, h := th.do(t, testRequest{method: route.method, path: route.path, header: map[string]string{"Authorization": auth}})
			if code != http.StatusUnauthorized || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") || !strings.Contains(body, "Authorization: Bearer") {
				t.Errorf("%s %s with Authorization %q: got %d %q (WWW-Authenticate %q), want 401", route.method, route.path, auth, code, body, h.Get("WWW-Authenticate"))
			}
			if strings.Contains(body, token) {
				t.Errorf("a 401 body holds the token: %q", body)
			}
			if route.method == "DELETE" && len(th.store.List("", time.Time{})) == 0 {
				t.Errorf("a DELETE with Authorization %q cleared the findings", auth)
			}
		}
		if route.path == "/api/findings/stream" {
			ctx, cancel := context.WithCancel(context.Background())
			res, err := openStream(ctx, th, map[string]string{"Authorization": "Bearer " + token})
			if err != nil {
				t.Errorf("stream with the token: %v", err)
			} else {
				res.Body.Close()
			}
			cancel()
			continue
		}
		for _, auth := range right {
			code, body, _ := th.do(t, testRequest{method: route.method, path: route.path, header: map[string]string{"Authorization": auth}})
			if code != http.StatusOK && code != http.StatusNoContent {
				t.Errorf("%s %s with Authorization %q: got %d %q, want it answered", route.method, route.path, auth, code, body)
			}
		}
	}
	// /healthz needs no token; /readyz answers without it, but keeps the
	// reason (the upstream's address) for those with it.
	if code, _, _ := th.do(t, testRequest{method: "GET", path: "/healthz"}); code != http.StatusOK {
		t.Errorf("GET /healthz without the token: got %d, want 200", code)
	}
	if code, body, _ := th.do(t, testRequest{method: "GET", path: "/readyz"}); code != http.StatusServiceUnavailable || body != "upstream not reachable\n" {
		t.Errorf("GET /readyz without the token: got %d %q, want 503 without the reason", code, body)
	}
	code, body, _ := th.do(t, testRequest{method: "GET", path: "/readyz", header: map[string]string{"Authorization": "Bearer " + token}})
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "10.1.2.3:5432") {
		t.Errorf("GET /readyz with the token: got %d %q, want 503 with the reason", code, body)
	}
	*th.upstream = nil
	if code, _, _ := th.do(t, testRequest{method: "GET", path: "/readyz"}); code != http.StatusOK {
		t.Errorf("GET /readyz without the token, upstream up: got %d, want 200", code)
	}
	// The Host and Origin checks come first, token or not.
	code, _, _ = th.do(t, testRequest{method: "GET", path: "/api/findings", host: "evil.example",
		header: map[string]string{"Authorization": "Bearer " + token}})
	if code != http.StatusForbidden {
		t.Errorf("a foreign Host with the token: got %d, want 403", code)
	}
	if logs := th.logs.String(); strings.Contains(logs, token) || !strings.Contains(logs, "bearer token") {
		t.Errorf("want a refusal log line without the token, got:\n%s", logs)
	}
}

// openStream opens GET /api/findings/stream and reads its first comment, so
// that the stream is counted when it returns. The caller closes the body
// (or cancels ctx).
func openStream(ctx context.Context, th *testHTTP, header map[string]string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", th.base+"/api/findings/stream", nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := (&http.Transport{DisableKeepAlives: true}).RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res, &statusError{res.StatusCode, res.Header.Get("Retry-After"), string(body)}
	}
	line, err := bufio.NewReader(res.Body).ReadString('\n')
	if err != nil || line != ": nplus1 findings\n" {
		res.Body.Close()
		return nil, errors.New("stream did not start: " + strconv.Quote(line))
	}
	return res, nil
}

type statusError struct {
	code       int
	retryAfter string
	body       string
}

func (e *statusError) Error() string { return strconv.Itoa(e.code) + " " + e.body }

func TestHTTPStreamLimit(t *testing.T) {
	const limit = 3
	th := startTestHTTP(t, "127.0.0.1:0", httpDeps{maxStreams: limit})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var open []*http.Response
	for i := range limit {
		res, err := openStream(ctx, th, nil)
		if err != nil {
			t.Fatalf("stream %d of %d: %v", i+1, limit, err)
		}
		open = append(open, res)
	}
	for range 2 {
		_, err := openStream(ctx, th, nil)
		var se *statusError
		if !errors.As(err, &se) || se.code != http.StatusServiceUnavailable || se.retryAfter == "" || !strings.Contains(se.body, "too many findings streams") {
			t.Fatalf("stream past the limit of %d: got %v, want 503 with Retry-After", limit, err)
		}
	}
	// The open streams still get findings.
	th.addFinding()
	for i, res := range open {
		br := bufio.NewReader(res.Body)
		done := make(chan string, 1)
		go func() {
			var got strings.Builder
			for !strings.Contains(got.String(), "\n\n") {
				l, err := br.ReadString('\n')
				got.WriteString(l)
				if err != nil {
					break
				}
			}
			done <- got.String()
		}()
		select {
		case got := <-done:
			if !strings.HasPrefix(got, "event: finding\n") {
				t.Errorf("stream %d: got %q, want a finding event", i, got)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("stream %d: no finding event after 10s", i)
		}
	}
	// A closed stream frees its place.
	open[0].Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := openStream(ctx, th, nil)
		if err == nil {
			res.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after closing a stream, a new one is still refused: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if logs := th.logs.String(); !strings.Contains(logs, `"reason":"too many findings streams"`) || !strings.Contains(logs, `"max_streams":3`) {
		t.Errorf("want a log line about the refused stream, got:\n%s", logs)
	}
	for _, res := range open[1:] {
		res.Body.Close()
	}
}

// The token flags, through the command line: where the token comes from,
// and errors that never repeat it.
func TestHTTPTokenFlags(t *testing.T) {
	const token = "flag-t0ken-value"
	file := writeFile(t, "token", "\n "+token+"\n")
	empty := writeFile(t, "empty", " \n")
	base := []string{"proxy", "--upstream", "127.0.0.1:1", "--listen", "127.0.0.1:0"}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{name: "token without http", args: []string{"--http-token", token}, want: "--http-token: needs --http"},
		{name: "env token without http", env: map[string]string{"NPLUS1_HTTP_TOKEN": token}, want: "--http-token (from NPLUS1_HTTP_TOKEN): needs --http"},
		{name: "both", args: []string{"--http", "127.0.0.1:0", "--http-token", token, "--http-token-file", file}, want: "give one or the other"},
		{name: "empty file", args: []string{"--http", "127.0.0.1:0", "--http-token-file", empty}, want: "holds no token"},
		{name: "missing file", args: []string{"--http", "127.0.0.1:0", "--http-token-file", file + ".nope"}, want: "--http-token-file: open "},
		{name: "space", args: []string{"--http", "127.0.0.1:0", "--http-token", token + " x"}, want: "printable ASCII without spaces"},
		{name: "control", env: map[string]string{"NPLUS1_HTTP": "127.0.0.1:0", "NPLUS1_HTTP_TOKEN": token + "\x01"}, want: "--http-token (from NPLUS1_HTTP_TOKEN): the token must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, err := runArgs(t, tt.env, append(append([]string{}, base...), tt.args...)...)
			if got := exitCode(err); got != exitUsage {
				t.Errorf("got exit code %d (%v), want %d", got, err, exitUsage)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("got stderr %q, want it to contain %q", stderr, tt.want)
			}
			if strings.Contains(stderr, token) {
				t.Errorf("stderr holds the token: %q", stderr)
			}
		})
	}
	for _, src := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"flag", []string{"--http-token", token}, nil},
		{"env", nil, map[string]string{"NPLUS1_HTTP_TOKEN": token}},
		{"file", []string{"--http-token-file", file}, nil},
	} {
		t.Run("serves with the token from the "+src.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			env := map[string]string{"NPLUS1_LOG_FORMAT": "json"}
			for k, v := range src.env {
				env[k] = v
			}
			args := append(append([]string{}, base...), "--http", "127.0.0.1:0", "--shutdown-timeout", "1s", "--log-level", "debug")
			addrs, logs, done := startCommand(t, ctx, append(args, src.args...), env, io.Discard, "proxy", "http")
			api := "http://" + addrs["http"] + "/api/findings"
			for auth, want := range map[string]int{"": 401, "Bearer wrong": 401, "Bearer " + token: 200} {
				req, _ := http.NewRequest("GET", api, nil)
				if auth != "" {
					req.Header.Set("Authorization", auth)
				}
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				if res.StatusCode != want {
					t.Errorf("Authorization %q: got %d, want %d", auth, res.StatusCode, want)
				}
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
			if strings.Contains(logs.String(), token) {
				t.Errorf("the logs hold the token:\n%s", logs)
			}
		})
	}
}
