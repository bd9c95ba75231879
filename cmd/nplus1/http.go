package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// readyTimeout bounds the upstream check behind /readyz.
const readyTimeout = 2 * time.Second

// httpDeps is what the HTTP handlers need. Routes added by later features
// (metrics, findings) add their dependencies here.
type httpDeps struct {
	// checkUpstream reports whether the upstream is reachable (/readyz).
	checkUpstream func(context.Context) error
	logger        *slog.Logger
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
	return mux
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
}

// listenHTTP listens on addr and logs "listening"; serve starts answering.
func listenHTTP(ctx context.Context, addr string, d httpDeps) (*httpServer, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	d.logger.Info("listening", "addr", ln.Addr().String())
	return &httpServer{
		ln: ln,
		srv: &http.Server{
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
	err := h.srv.Shutdown(ctx)
	if err != nil {
		h.srv.Close()
	}
	return err
}
