package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
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
}

// newMux builds the HTTP routes.
func newMux(d httpDeps) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeText(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := d.checkUpstream(ctx); err != nil {
			d.logger.Debug("not ready", "err", err)
			writeText(w, http.StatusServiceUnavailable, "upstream not reachable: "+err.Error()+"\n")
			return
		}
		writeText(w, http.StatusOK, "ok\n")
	})
	if d.metrics != nil {
		mux.Handle("GET /metrics", d.metrics)
	}
	if d.findings != nil {
		mux.HandleFunc("GET /api/findings", d.listFindings)
		mux.HandleFunc("DELETE /api/findings", d.clearFindings)
		mux.HandleFunc("GET /api/findings/stream", d.streamFindings)
	}
	return mux
}

// listFindings answers GET /api/findings: a JSON array of the stored
// findings, oldest first; ?kind= keeps one kind, ?since= those made at or
// after an RFC 3339 time or within a duration ("5m").
func (d httpDeps) listFindings(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	kind := detector.Kind(q.Get("kind"))
	if kind != "" && !slices.Contains(detector.Kinds(), kind) {
		writeText(w, http.StatusBadRequest, fmt.Sprintf("unknown kind %q; kinds: n_plus_one, duplicate_query, unpaginated, select_star\n", kind))
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
