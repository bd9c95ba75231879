package proxy

import (
	"context"
	"net"
)

// Stats are the server's counters, read with atomic loads.
type Stats struct {
	ConnsAccepted   uint64 // client connections accepted
	ConnsRejected   uint64 // refused by MaxConnections or shutdown
	ConnsActive     int64  // client connections open now
	ConnErrors      uint64 // connections that ended with an error
	UpstreamErrors  uint64 // failed upstream dials or TLS handshakes
	ProtocolErrors  uint64 // connections ended by a ProtocolError
	BytesFromClient uint64
	BytesFromServer uint64
	Events          uint64 // executions handed to Config.Events
	EventsDropped   uint64 // executions dropped because Events was full
}

// Server is the proxy. Create it with New, run it with Serve, stop it with
// Shutdown.
type Server struct {
	cfg Config
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Server{cfg: cfg}, nil
}

// Serve accepts connections on ln until Shutdown; it returns nil after
// Shutdown and the accept error otherwise.
func (s *Server) Serve(ln net.Listener) error { panic("TODO") }

// Shutdown stops accepting, waits for open connections to end until ctx is
// done, then closes the rest. It returns ctx.Err() when it had to force.
func (s *Server) Shutdown(ctx context.Context) error { panic("TODO") }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats { panic("TODO") }

// CheckUpstream dials the upstream (with TLS as configured) and reports
// whether it answered; it is what /readyz asks.
func (s *Server) CheckUpstream(ctx context.Context) error { panic("TODO") }
