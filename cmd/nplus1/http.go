package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nplus1/nplus1/analyzer"
	"github.com/nplus1/nplus1/detector"
)

// readyTimeout bounds the upstream check behind /readyz.
const readyTimeout = 2 * time.Second

// httpDeps is what the HTTP handlers need. Routes added by later features
// (metrics, findings) add their dependencies here.
type httpDeps struct {
	// checkUpstream reports whether the upstream is reachable (/readyz).
	checkUpstream func(context.Context) error
	// findings and analyzer serve /api/findings; nil leaves the routes out.
	findings *analyzer.Store
	analyzer *analyzer.Analyzer
	// metrics serves GET /metrics; nil leaves the route out.
	metrics http.Handler
	logger  *slog.Logger

	// web is what the page's own routes read (webapi.go).
	web webDeps

	// token, when set (--http-token), is required as "Authorization:
	// Bearer TOKEN" by every route but /healthz and /readyz; /readyz then
	// gives its reason only with it.
	token string
	// loopbackOnly (the server is bound to a loopback address) limits the
	// Host header to loopback names and addresses and boundHost, so that a
	// web page cannot reach the API by DNS rebinding. listenHTTP sets both.
	loopbackOnly bool
	boundHost    string // the host of --http, lower case
	// maxStreams bounds the findings streams open at once; 0:
	// defaultMaxStreams. Past it a stream is answered 503.
	maxStreams int

	// Set by newMux.
	tokenSum [sha256.Size]byte
	streams  chan struct{} // one entry per open findings stream
	refused  *refusalLog
}

// defaultMaxStreams bounds the open findings streams: each holds a buffer
// of 256 findings (about 90 KB) and a connection.
const defaultMaxStreams = 64

// streamRetryAfter is the Retry-After, in seconds, of a stream refused
// because too many are open.
const streamRetryAfter = "30"

// routeAccess is what a route checks before it answers; /healthz, which
// tells nothing, checks nothing.
type routeAccess int

const (
	accessProbe  routeAccess = iota // /readyz: Host; the token only for the reason
	accessScrape                    // /metrics: Host and token
	accessAPI                       // /api/...: Host, Origin and token
)

// newMux builds the HTTP routes.
func newMux(d httpDeps) *http.ServeMux {
	if d.token != "" {
		d.tokenSum = sha256.Sum256([]byte(d.token))
	}
	if d.maxStreams <= 0 {
		d.maxStreams = defaultMaxStreams
	}
	d.streams = make(chan struct{}, d.maxStreams)
	d.refused = &refusalLog{logger: d.logger}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeText(w, http.StatusOK, "ok\n")
	})
	mux.Handle("GET /readyz", d.guard(accessProbe, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := d.checkUpstream(ctx); err != nil {
			d.logger.Debug("not ready", "err", err)
			if !d.authorized(r) {
				// The reason names the upstream's address.
				writeText(w, http.StatusServiceUnavailable, "upstream not reachable\n")
				return
			}
			writeText(w, http.StatusServiceUnavailable, "upstream not reachable: "+err.Error()+"\n")
			return
		}
		writeText(w, http.StatusOK, "ok\n")
	})))
	if d.metrics != nil {
		mux.Handle("GET /metrics", d.guard(accessScrape, d.metrics))
	}
	if d.findings != nil {
		mux.Handle("GET /api/findings", d.guard(accessAPI, http.HandlerFunc(d.listFindings)))
		mux.Handle("DELETE /api/findings", d.guard(accessAPI, http.HandlerFunc(d.clearFindings)))
		mux.Handle("GET /api/findings/stream", d.guard(accessAPI, http.HandlerFunc(d.streamFindings)))
	}
	d.webRoutes(mux) // the page at / and its API (webapi.go)
	return mux
}

// guard answers 403 to a request whose Host is not allowed (see
// hostAllowed) or, on the API, that a browser sent from another origin
// (see sameOrigin), and 401 to one without the token when one is set;
// otherwise next answers.
func (d httpDeps) guard(a routeAccess, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case !d.hostAllowed(r.Host):
			d.refused.log(r, "Host is not a loopback name or address", "host", clip(r.Host))
			writeText(w, http.StatusForbidden, "forbidden: the Host header must be a loopback name or address (localhost, 127.0.0.1, [::1]): "+
				"this server listens on loopback only\n")
		case a == accessAPI && !sameOrigin(r):
			d.refused.log(r, "cross-origin", "origin", clip(r.Header.Get("Origin")), "sec_fetch_site", clip(r.Header.Get("Sec-Fetch-Site")))
			writeText(w, http.StatusForbidden, "forbidden: cross-origin requests are refused\n")
		case a != accessProbe && !d.authorized(r):
			d.refused.log(r, "missing or wrong bearer token")
			w.Header().Set("WWW-Authenticate", `Bearer realm="nplus1"`)
			writeText(w, http.StatusUnauthorized, "unauthorized: send the --http-token as \"Authorization: Bearer TOKEN\"\n")
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// authorized reports whether r carries the token, when one is set. The
// digests are compared in constant time, so neither the token's bytes nor
// its length can be guessed from the time an answer takes.
func (d httpDeps) authorized(r *http.Request) bool {
	if d.token == "" {
		return true
	}
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimLeft(cred, " ")))
	return subtle.ConstantTimeCompare(sum[:], d.tokenSum[:]) == 1
}

// hostAllowed reports whether a request for host (the Host header) is
// answered. Bound to loopback, only clients on this machine connect, and a
// browser sends the name it resolved: a page whose own name was made to
// resolve to 127.0.0.1 (DNS rebinding) sends that name, which is refused.
// Allowed are localhost and *.localhost (which browsers never look up in
// DNS), loopback IP literals, and the host --http names, with any port.
// Bound beyond loopback, the names the server is reached by are not known
// here: every Host is answered, and --http-token is what protects it.
func (d httpDeps) hostAllowed(host string) bool {
	if !d.loopbackOnly || host == "" { // HTTP/1.0 without Host: not a browser
		return true
	}
	h := normalizeHost(host)
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	if ip := net.ParseIP(h); ip != nil {
		return ip.IsLoopback()
	}
	return d.boundHost != "" && h == d.boundHost
}

// normalizeHost returns the host of a Host header or an address without its
// port and brackets, in lower case, without a final dot.
func normalizeHost(hostport string) string {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// sameOrigin reports whether r did not come from a page of another origin:
// browsers send Origin with every cross-origin request, and Sec-Fetch-Site
// with every request; clients that are not browsers send neither. Another
// port of the same host is another origin: this server sends no CORS
// headers, so a page elsewhere could not read its answers anyway.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none": // none: typed in the address bar
	default: // cross-site, same-site
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" { // "null": a sandboxed or file: page
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// refusalLog logs refused requests at most once per refusalLogEvery, with
// how many were refused in all, so that a flood of them cannot flood the
// log.
type refusalLog struct {
	logger *slog.Logger
	mu     sync.Mutex
	total  uint64
	last   time.Time
}

const refusalLogEvery = 10 * time.Second

// clip shortens a header value for a log line: it is the client's to choose.
func clip(s string) string {
	const most = 200
	if len(s) > most {
		return s[:most] + "..."
	}
	return s
}

func (l *refusalLog) log(r *http.Request, reason string, attrs ...any) {
	l.mu.Lock()
	l.total++
	total := l.total
	now := time.Now()
	quiet := !l.last.IsZero() && now.Sub(l.last) < refusalLogEvery
	if !quiet {
		l.last = now
	}
	l.mu.Unlock()
	if quiet {
		return
	}
	args := append([]any{"reason", reason, "method", clip(r.Method), "path", clip(r.URL.Path), "remote", r.RemoteAddr}, attrs...)
	args = append(args, "refused_total", total)
	l.logger.Warn("refused an HTTP request (logged at most once per 10s)", args...)
}

// listFindings answers GET /api/findings: a JSON array of the stored
// findings, oldest first; ?kind= keeps one kind, ?since= those made at or
// after an RFC 3339 time or within a duration ("5m").
func (d httpDeps) listFindings(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	kind := detector.Kind(q.Get("kind"))
	if kind != "" && !slices.Contains(detector.Kinds(), kind) {
		writeText(w, http.StatusBadRequest, fmt.Sprintf("unknown kind %q; kinds: %s\n", kind, kindNames()))
		return
	}
	var since time.Time
	if s := q.Get("since"); s != "" {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			since = t
		} else if dur, err := time.ParseDuration(s); err == nil && dur > 0 {
			since = time.Now().Add(-dur)
		} else {
			writeText(w, http.StatusBadRequest, "since: want an RFC 3339 time (2026-01-02T15:04:05Z) or a duration (5m)\n")
			return
		}
	}
	writeJSON(w, d.findings.List(kind, since))
}

// clearFindings answers DELETE /api/findings: forget the stored findings and
// the report cooldowns, so that a test suite can assert per test.
func (d httpDeps) clearFindings(w http.ResponseWriter, r *http.Request) {
	d.findings.Clear()
	if d.analyzer != nil {
		d.analyzer.ResetReported()
	}
	w.WriteHeader(http.StatusNoContent)
}

// sseHeartbeat keeps idle event streams (and proxies between) open.
const sseHeartbeat = 15 * time.Second

// streamFindings answers GET /api/findings/stream with Server-Sent Events:
// one "finding" event per new finding, its data the finding's JSON.
func (d httpDeps) streamFindings(w http.ResponseWriter, r *http.Request) {
	select {
	case d.streams <- struct{}{}:
		defer func() { <-d.streams }()
	default:
		d.refused.log(r, "too many findings streams", "max_streams", cap(d.streams))
		w.Header().Set("Retry-After", streamRetryAfter)
		writeText(w, http.StatusServiceUnavailable, fmt.Sprintf("too many findings streams open (%d); retry later\n", cap(d.streams)))
		return
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	sub := d.findings.Subscribe(256)
	defer sub.Cancel()
	_, _ = io.WriteString(w, ": nplus1 findings\n\n")
	_ = rc.Flush()
	tick := time.NewTicker(sseHeartbeat)
	defer tick.Stop()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for {
		buf.Reset()
		select {
		case <-r.Context().Done():
			return
		case f := <-sub.C:
			buf.WriteString("event: finding\ndata: ")
			if err := enc.Encode(&f); err != nil { // Encode ends with "\n"
				return
			}
			buf.WriteString("\n")
		case <-tick.C:
			buf.WriteString(": keep-alive\n\n")
		}
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := w.Write(buf.Bytes()); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		writeText(w, http.StatusInternalServerError, err.Error()+"\n")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

func writeText(w http.ResponseWriter, code int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

// httpToken returns the bearer token of --http-token or --http-token-file
// ("" without either). The token is never part of an error: they name the
// flag and where its value came from. Every error is a *usageError.
func httpToken(fs *flagSet, addr, token, file string) (string, error) {
	name := "http-token"
	switch {
	case token != "" && file != "":
		return "", usageErrorf("--http-token and --http-token-file: give one or the other")
	case file != "":
		name = "http-token-file"
		data, err := os.ReadFile(file)
		if err != nil {
			return "", fs.errorf(name, "%v", err)
		}
		token = strings.TrimSpace(string(data))
		if token == "" {
			return "", fs.errorf(name, "%s holds no token", file)
		}
	case token == "":
		return "", nil
	}
	if addr == "" {
		return "", fs.errorf(name, "needs --http: there is no HTTP server to protect")
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c >= 0x7f {
			return "", fs.errorf(name, "the token must be printable ASCII without spaces (the value is not shown)")
		}
	}
	return token, nil
}

// httpServer is the --http listener and its server.
type httpServer struct {
	ln  net.Listener
	srv *http.Server
	// stop cancels the context of every request, so that long-lived
	// responses (the findings stream) end when the server shuts down.
	stop context.CancelFunc
}

// listenHTTP listens on addr and logs "listening"; serve starts answering.
func listenHTTP(ctx context.Context, addr string, d httpDeps) (*httpServer, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	d.logger.Info("listening", "addr", ln.Addr().String())
	tcp, _ := ln.Addr().(*net.TCPAddr)
	d.loopbackOnly = tcp != nil && tcp.IP.IsLoopback()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		d.boundHost = normalizeHost(host)
	}
	switch {
	case d.loopbackOnly:
	case d.token == "":
		d.logger.Warn("the HTTP API is reachable from the network without authentication: whoever can connect can read and clear "+
			"the findings and read /metrics; set --http-token (or NPLUS1_HTTP_TOKEN, --http-token-file) or listen on a loopback address "+
			"(--http 127.0.0.1:PORT)", "addr", ln.Addr().String())
	default:
		d.logger.Info("the HTTP API is reachable from the network; every route but /healthz and /readyz needs the bearer token, "+
			"which plain HTTP carries in clear text", "addr", ln.Addr().String())
	}
	base, stop := context.WithCancel(context.WithoutCancel(ctx))
	return &httpServer{
		ln:   ln,
		stop: stop,
		srv: &http.Server{
			BaseContext:       func(net.Listener) context.Context { return base },
			Handler:           newMux(d),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			// Long-lived responses added later (server-sent events) extend
			// their own deadline with http.ResponseController.
			WriteTimeout:   30 * time.Second,
			IdleTimeout:    60 * time.Second,
			MaxHeaderBytes: 64 << 10,
			ErrorLog:       slog.NewLogLogger(d.logger.Handler(), slog.LevelWarn),
		},
	}, nil
}

// serve answers requests until shutdown; it returns nil after shutdown.
func (h *httpServer) serve() error {
	err := h.srv.Serve(h.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// shutdown stops the server gracefully, then forcibly when ctx is done.
func (h *httpServer) shutdown(ctx context.Context) error {
	h.stop()
	err := h.srv.Shutdown(ctx)
	if err != nil {
		h.srv.Close()
	}
	return err
}
