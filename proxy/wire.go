package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/nplus1/nplus1/internal/netreason"
	"github.com/nplus1/nplus1/pgwire"
)

// SQLSTATE codes the proxy itself reports.
const (
	stateProtocolViolation    = "08P01"
	stateConnectionFailure    = "08006"
	stateTooManyConnections   = "53300"
	stateAdminShutdown        = "57P01"
	stateQueryCanceled        = "57014"
	stateInvalidAuthorization = "28000"
)

// readStartup reads one length-prefixed startup-phase packet (no type byte).
func readStartup(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n < 8 || n > pgwire.MaxStartupPacketLen {
		return nil, &pgwire.ProtocolError{Frontend: true, Msg: fmt.Sprintf("invalid startup packet length %d", n)}
	}
	pkt := make([]byte, n)
	copy(pkt, hdr[:])
	if _, err := io.ReadFull(r, pkt[4:]); err != nil {
		return nil, err
	}
	return pkt, nil
}

// readMessage reads one typed message whole (type byte, length, body): only
// used during authentication, where messages are small.
func readMessage(r io.Reader, frontend bool) (typ byte, msg []byte, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[1:]))
	if n < 4 || n > maxAuthMessageLen {
		return 0, nil, &pgwire.ProtocolError{Frontend: frontend, Msg: fmt.Sprintf("invalid length %d for message type %q during authentication", n, hdr[0])}
	}
	msg = make([]byte, 1+n)
	copy(msg, hdr[:])
	if _, err := io.ReadFull(r, msg[5:]); err != nil {
		return 0, nil, err
	}
	return hdr[0], msg, nil
}

func cstring(b []byte) (string, []byte, bool) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:], true
		}
	}
	return "", nil, false
}

// errorResponse encodes a FATAL ErrorResponse.
func errorResponse(code, msg string) []byte {
	e := &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg}
	b, _ := e.Encode(nil)
	return b
}

// stripChannelBinding removes SCRAM-SHA-256-PLUS (and any other -PLUS
// mechanism) from an AuthenticationSASL message. Channel binding ties the
// SCRAM exchange to the TLS session between client and server; the proxy
// terminates TLS on both sides, so a bound exchange can never succeed through
// it. Offering only the unbound mechanisms lets clients that prefer channel
// binding (libpq's default) fall back. It returns the message unchanged, and
// false, when there was nothing to remove.
func stripChannelBinding(msg []byte) ([]byte, bool) {
	// 'R' len(4) code(4)=10 then mechanism names, each NUL-terminated, then NUL.
	body := msg[9:]
	var kept [][]byte
	removed := false
	for len(body) > 0 && body[0] != 0 {
		i := 0
		for i < len(body) && body[i] != 0 {
			i++
		}
		name := body[:i]
		if len(name) > 5 && string(name[len(name)-5:]) == "-PLUS" {
			removed = true
		} else {
			kept = append(kept, name)
		}
		if i == len(body) {
			break
		}
		body = body[i+1:]
	}
	if !removed {
		return msg, false
	}
	out := []byte{'R', 0, 0, 0, 0, 0, 0, 0, 10}
	for _, k := range kept {
		out = append(out, k...)
		out = append(out, 0)
	}
	out = append(out, 0)
	binary.BigEndian.PutUint32(out[1:], uint32(len(out)-1))
	return out, true
}

// dialReason says why dialing the upstream failed in words fit for a
// client: the cause, without the proxy's own resolver or local addresses
// that net's errors carry.
func dialReason(err error) string {
	if errors.Is(err, errServerNoSSL) {
		return err.Error()
	}
	return netreason.Of(err)
}

// upstreamError is a failed upstream check: its message names only the
// upstream's address and dialReason; Unwrap gives the whole cause, for logs.
type upstreamError struct {
	addr string
	err  error
}

func (e *upstreamError) Error() string {
	return fmt.Sprintf("cannot connect to upstream %s: %s", e.addr, dialReason(e.err))
}

func (e *upstreamError) Unwrap() error { return e.err }
