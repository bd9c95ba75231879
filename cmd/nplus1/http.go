package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"slices"
	"strconv"
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
	// flush serves POST /api/flush: a barrier through the analyzer that
	// closes the windows f scopes (analyzer.FlushWhere, with the count of
	// executions the proxy handed it); nil leaves the route out.
	flush func(ctx context.Context, f analyzer.Filter) (analyzer.FlushResult, error)
	// metrics serves GET /metrics; nil leaves the route out.
	metrics http.Handler
	// plan serves GET /api/fingerprints/{id}/plan (--inspect-url,
	// inspect.go); nil leaves the route out.
	plan planOf
	// pprof serves Go's profiler under /debug/pprof/ (--pprof).
	pprof  bool
	logger *slog.Logger

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
	if d.flush != nil {
		mux.Handle("POST /api/flush", d.guard(accessAPI, http.HandlerFunc(d.flushFindings)))
	}
	d.webRoutes(mux) // the page at / and its API (webapi.go)
	mux.Handle("GET /api/fingerprints/{id}/plan", d.guard(accessAPI, http.HandlerFunc(d.servePlan)))
	if d.pprof {
		// What the proxy itself spends CPU and memory on, for a report
		// of a slow proxy: `go tool pprof http://HOST/debug/pprof/profile`.
		// Guarded as /metrics is (Host and token): a profile shows code
		// paths and sizes, never statements or values.
		mux.Handle("GET /debug/pprof/", d.guard(accessScrape, http.HandlerFunc(pprof.Index)))
		mux.Handle("GET /debug/pprof/profile", d.guard(accessScrape, http.HandlerFunc(pprof.Profile)))
		mux.Handle("GET /debug/pprof/trace", d.guard(accessScrape, http.HandlerFunc(pprof.Trace)))
		mux.Handle("GET /debug/pprof/symbol", d.guard(accessScrape, http.HandlerFunc(pprof.Symbol)))
	}
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

// findingParams are the query parameters that select findings (see
// parseFilter); flushParams those of POST /api/flush.
var (
	findingParams = []string{"kind", "since", "application", "trace", "tag"}
	flushParams   = []string{"application", "trace"}
)

// parseFilter reads the filter of a findings route from its query: kind=
// one kind, since= an RFC 3339 time or a duration back from now ("5m"),
// application= an application_name, trace= a sqlcommenter trace id (32
// lowercase hex digits), tag=KEY:VALUE a sqlcommenter tag (repeatable: all
// must match). A parameter not in allowed, or given twice when it cannot
// be, is an error: a typo must not widen a DELETE to every finding.
func parseFilter(q url.Values, allowed []string) (analyzer.Filter, error) {
	var f analyzer.Filter
	for name, vs := range q {
		if !slices.Contains(allowed, name) {
			return f, fmt.Errorf("unknown parameter %q; this route takes %s", clip(name), strings.Join(allowed, ", "))
		}
		if name != "tag" && len(vs) > 1 {
			return f, fmt.Errorf("%s: give it once (only tag repeats)", name)
		}
	}
	if k := detector.Kind(q.Get("kind")); k != "" {
		if !slices.Contains(detector.Kinds(), k) {
			return f, fmt.Errorf("unknown kind %q; kinds: %s", clip(string(k)), kindNames())
		}
		f.Kind = k
	}
	if s := q.Get("since"); s != "" {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			f.Since = t
		} else if dur, err := time.ParseDuration(s); err == nil && dur > 0 {
			f.Since = time.Now().Add(-dur)
		} else {
			return f, errors.New("since: want an RFC 3339 time (2026-01-02T15:04:05Z) or a duration (5m)")
		}
	}
	f.Application = q.Get("application")
	if t := q.Get("trace"); t != "" {
		if !isTraceID(t) {
			return f, fmt.Errorf("trace %q: want a trace id, the 32 lowercase hex digits of a W3C traceparent (4bf92f3577b34da6a3ce929d0e0e4736)", clip(t))
		}
		f.Trace = t
	}
	for _, v := range q["tag"] {
		tag, err := analyzer.ParseTag(v)
		if err != nil {
			return f, errors.New(clip(err.Error()))
		}
		f.Tags = append(f.Tags, tag)
	}
	return f, nil
}

// isTraceID reports whether s has the form of a trace id: 32 lowercase hex
// digits.
func isTraceID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// filterOf parses r's filter, or answers 400 and returns false.
func filterOf(w http.ResponseWriter, r *http.Request, allowed []string) (analyzer.Filter, bool) {
	f, err := parseFilter(r.URL.Query(), allowed)
	if err != nil {
		writeText(w, http.StatusBadRequest, err.Error()+"\n")
		return f, false
	}
	return f, true
}

// listFindings answers GET /api/findings: a JSON array of the stored
// findings the query selects (parseFilter), oldest first, each with its id.
func (d httpDeps) listFindings(w http.ResponseWriter, r *http.Request) {
	f, ok := filterOf(w, r, findingParams)
	if !ok {
		return
	}
	writeJSON(w, d.findings.ListWhere(f))
}

// clearFindings answers DELETE /api/findings: forget the stored findings
// the query selects (all without one) and, so that the next occurrence of
// a pattern is reported again, the report cooldowns: all of them without a
// query, those of the application or trace named (detector
// ResetReportedWhere), none for a query by kind, since or tag alone. So a
// test suite whose parallel workers run as applications of their own
// clears one test's findings without touching the others'.
func (d httpDeps) clearFindings(w http.ResponseWriter, r *http.Request) {
	f, ok := filterOf(w, r, findingParams)
	if !ok {
		return
	}
	d.findings.ClearWhere(f)
	if d.analyzer != nil && (f.IsZero() || f.Scoped()) {
		d.analyzer.ResetReportedWhere(f.Application, f.Trace)
	}
	w.WriteHeader(http.StatusNoContent)
}

// flushTimeout bounds how long POST /api/flush waits for the analyzer.
const flushTimeout = 10 * time.Second

// flushFindings answers POST /api/flush: once the analyzer has processed
// every execution the proxy had handed it before the request (each one a
// client has had the ReadyForQuery of) and closed the open windows of the
// application or trace named (every window without either), it answers
// with a JSON object: executions, windows_closed, findings (those of the
// scope the flush delivered). A test asserts with GET /api/findings right
// after, without sleeping.
func (d httpDeps) flushFindings(w http.ResponseWriter, r *http.Request) {
	f, ok := filterOf(w, r, flushParams)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), flushTimeout)
	defer cancel()
	res, err := d.flush(ctx, f)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		writeText(w, http.StatusServiceUnavailable, fmt.Sprintf("flush: the analyzer did not catch up within %s; retry\n", flushTimeout))
	case err != nil:
		writeText(w, http.StatusServiceUnavailable, "flush: "+err.Error()+"\n")
	default:
		writeJSON(w, res)
	}
}

// sseHeartbeat keeps idle event streams (and proxies between) open.
const sseHeartbeat = 15 * time.Second

// streamBuffer is the findings a stream holds for a slow reader before it
// falls behind and catches up from the store.
const streamBuffer = 256

// streamFindings answers GET /api/findings/stream with Server-Sent Events:
// one "finding" event per new finding the query selects (parseFilter), its
// id the finding's id, its data the finding's JSON. A client that sends
// Last-Event-ID (browsers do when they reconnect) first gets the stored
// findings after that id, then the live ones, with no gap and none twice; a
// "reset" event says when some after that id are no longer stored. Right
// after connecting, an event with an id and no data sets where a client
// that has seen no finding yet resumes.
func (d httpDeps) streamFindings(w http.ResponseWriter, r *http.Request) {
	f, ok := filterOf(w, r, findingParams)
	if !ok {
		return
	}
	after, resume, err := lastEventID(r)
	if err != nil {
		writeText(w, http.StatusBadRequest, err.Error()+"\n")
		return
	}
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
	var feed *analyzer.Feed
	var backlog analyzer.Backlog
	if resume {
		feed, backlog = d.findings.SubscribeAfter(after, streamBuffer, f)
	} else {
		feed, backlog = d.findings.Follow(streamBuffer, f)
	}
	defer feed.Cancel()
	sse := &sseWriter{w: w, rc: rc}
	sse.comment("nplus1 findings")
	if !sse.backlog(after, backlog) || !sse.send() {
		return
	}
	tick := time.NewTicker(sseHeartbeat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case st := <-feed.C:
			if !sse.finding(&st) {
				return
			}
		case <-feed.Behind:
			if !sse.backlog(sse.last, feed.Catchup(sse.last)) {
				return
			}
		case <-tick.C:
			sse.comment("keep-alive")
		}
		if !sse.send() {
			return
		}
	}
}

// lastEventID reads the Last-Event-ID header: the id of the last finding a
// reconnecting client saw; resume is false without one.
func lastEventID(r *http.Request) (id uint64, resume bool, err error) {
	v := strings.TrimSpace(r.Header.Get("Last-Event-ID"))
	if v == "" {
		return 0, false, nil
	}
	id, err = strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("Last-Event-ID %q: want the id of a finding event, a whole number (42)", clip(v))
	}
	return id, true, nil
}

// sseWriter writes Server-Sent Events into a buffer, sent and flushed by
// send; last is the id of the last finding written.
type sseWriter struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	buf  bytes.Buffer
	enc  *json.Encoder
	last uint64
}

func (s *sseWriter) comment(text string) {
	s.buf.WriteString(": " + text + "\n\n")
}

// event writes one event; data is JSON that Encode ended with a newline.
func (s *sseWriter) event(name string, id string, v any) bool {
	if s.enc == nil {
		s.enc = json.NewEncoder(&s.buf)
		s.enc.SetEscapeHTML(false)
	}
	s.buf.WriteString("event: " + name + "\n")
	if id != "" {
		s.buf.WriteString("id: " + id + "\n")
	}
	s.buf.WriteString("data: ")
	if err := s.enc.Encode(v); err != nil {
		return false
	}
	s.buf.WriteString("\n")
	return true
}

func (s *sseWriter) finding(st *analyzer.Stored) bool {
	s.last = st.ID
	return s.event("finding", strconv.FormatUint(st.ID, 10), st)
}

// sseReset is the data of a "reset" event: findings after the client's
// last id may be missing, and why (analyzer.ResetEvicted,
// analyzer.ResetUnknownID); oldest_id is the oldest still stored.
type sseReset struct {
	Reason      string `json:"reason"`
	LastEventID uint64 `json:"last_event_id"`
	OldestID    uint64 `json:"oldest_id"`
}

// backlog writes b, taken after the id after: a reset event when b says
// so, its findings, and then an event with an id and no data, b.Last: the
// client's next Last-Event-ID is where its feed goes on (a client that saw
// no finding resumes from there too), and the backlog is over.
func (s *sseWriter) backlog(after uint64, b analyzer.Backlog) bool {
	if b.Reset != "" {
		if !s.event("reset", "", sseReset{Reason: b.Reset, LastEventID: after, OldestID: b.Oldest}) {
			return false
		}
	}
	for i := range b.Findings {
		if !s.finding(&b.Findings[i]) {
			return false
		}
	}
	s.last = b.Last
	s.buf.WriteString("id: " + strconv.FormatUint(b.Last, 10) + "\n\n")
	return true
}

// send writes what is buffered and flushes it.
func (s *sseWriter) send() bool {
	defer s.buf.Reset()
	_ = s.rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := s.w.Write(s.buf.Bytes()); err != nil {
		return false
	}
	return s.rc.Flush() == nil
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
