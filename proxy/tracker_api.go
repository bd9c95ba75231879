package proxy

import (
	"fmt"
	"time"
)

// ProtocolError is a malformed or oversized message. The relay answers it
// with ErrorResponse 08P01 to the client and ends that connection only.
type ProtocolError struct {
	Frontend bool   // true when the client sent it
	Msg      string // what is wrong, safe to log (no message contents)
}

func (e *ProtocolError) Error() string {
	side := "server"
	if e.Frontend {
		side = "client"
	}
	return fmt.Sprintf("protocol violation from %s: %s", side, e.Msg)
}

// TrackerOptions bound a Tracker's memory; zero values take the package defaults.
type TrackerOptions struct {
	MaxMessageBytes int // larger messages are a ProtocolError
	MaxSQLBytes     int // SQL text kept per statement; longer is Truncated
	MaxStatements   int // prepared statements and portals remembered
	MaxPending      int // client messages awaiting a reply
}

// Tracker API (implemented in tracker.go):
//
//	func NewTracker(conn *ConnInfo, emit func(*Execution), opts TrackerOptions) *Tracker
//	func (t *Tracker) Frontend(p []byte, now time.Time) error
//	func (t *Tracker) Backend(p []byte, now time.Time) error
//	func (t *Tracker) Conn() *ConnInfo
var _ = time.Now
