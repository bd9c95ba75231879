package pgwire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"
)

// framer reads one direction's message headers and counts bodies.
type framer struct {
	hdr    [5]byte
	nhdr   int
	typ    byte
	left   int // body bytes still to come
	inBody bool
}

// header consumes header bytes from p. It returns the bytes left, and whether
// a new message header is complete (f.typ and f.left then describe it).
func (f *framer) header(p []byte, maxMsg uint32, frontend bool) ([]byte, bool, error) {
	var h []byte
	if f.nhdr == 0 && len(p) >= 5 {
		h, p = p[:5], p[5:]
	} else {
		n := copy(f.hdr[f.nhdr:], p)
		f.nhdr += n
		p = p[n:]
		if f.nhdr < 5 {
			return p, false, nil
		}
		f.nhdr = 0
		h = f.hdr[:]
	}
	typ := h[0]
	l := binary.BigEndian.Uint32(h[1:5])
	if l < 4 {
		return p, false, &ProtocolError{Frontend: frontend, Msg: fmt.Sprintf("message %q has invalid length %d", typ, int32(l))}
	}
	if l > maxMsg {
		return p, false, &ProtocolError{Frontend: frontend, Msg: fmt.Sprintf("message %q of %d bytes exceeds the limit of %d bytes", typ, l, maxMsg)}
	}
	if frontend && !knownFrontendType(typ) {
		return p, false, &ProtocolError{Frontend: true, Msg: fmt.Sprintf("unknown message type %q", typ)}
	}
	f.typ = typ
	f.left = int(l - 4)
	f.inBody = true
	return p, true, nil
}

// knownFrontendType reports the message types PostgreSQL accepts from a
// client after authentication (PostgresMain, src/backend/tcop/postgres.c).
func knownFrontendType(typ byte) bool {
	switch typ {
	case feQuery, feParse, feBind, feExecute, feDescribe, feClose, feSync, feFlush, feFunctionCall, feCopyData, feCopyDone, feCopyFail, feTerminate:
		return true
	}
	return false
}

// Frontend observes bytes the client sent, in order, in any chunking. p is
// not retained.
func (t *Tracker) Frontend(p []byte, now time.Time) error {
	if t.err != nil {
		return t.err
	}
	f := &t.fe
	for len(p) > 0 {
		if !f.inBody {
			var ok bool
			var err error
			p, ok, err = f.header(p, t.maxMsg, true)
			if err != nil {
				t.err = err
				t.releaseCredit() // nothing more is attached
				return err
			}
			if !ok {
				return nil
			}
			if t.emit != nil {
				t.feStart()
			} else if frontendKind(f.typ).syncPoint() {
				t.bareSyncs++
			}
		}
		if f.left > 0 && len(p) > 0 {
			n := min(f.left, len(p))
			if t.emit != nil {
				t.feBody(p[:n])
			}
			p = p[n:]
			f.left -= n
		}
		if f.left == 0 {
			f.inBody = false
			if t.emit != nil {
				t.feEnd(now)
			}
		}
	}
	return nil
}

// Backend observes bytes the server sent, in order, in any chunking. p is not
// retained.
func (t *Tracker) Backend(p []byte, now time.Time) error {
	if t.err != nil {
		return t.err
	}
	f := &t.be
	observe := t.emit != nil || f.typ == beReadyForQuery
	for len(p) > 0 {
		if !f.inBody {
			var ok bool
			var err error
			p, ok, err = f.header(p, t.maxMsg, false)
			if err != nil {
				t.err = err
				t.releaseCredit() // nothing more is attached
				return err
			}
			if !ok {
				return nil
			}
			// Untracked, only ReadyForQuery is read (for Idle).
			observe = t.emit != nil || f.typ == beReadyForQuery
			if observe {
				t.beStart()
				if t.evidence {
					t.evRead = false
					if f.typ == beDataRow || f.typ == beRowDescription {
						t.evidenceStart()
					}
				}
			}
		}
		if f.left > 0 && len(p) > 0 {
			n := min(f.left, len(p))
			if observe {
				t.beBody(p[:n])
			}
			p = p[n:]
			f.left -= n
		}
		if f.left == 0 {
			f.inBody = false
			if observe {
				t.beEnd(now)
			}
		}
	}
	return nil
}

// cstr collects a NUL-terminated string as it streams by, up to a limit.
type cstr struct {
	buf   []byte
	done  bool // the NUL was seen
	trunc bool // bytes beyond the limit were dropped
}

func (c *cstr) reset() {
	if cap(c.buf) > keepBufferCap {
		c.buf = nil
	}
	c.buf = c.buf[:0]
	c.done = false
	c.trunc = false
}

// feed consumes p up to and including the NUL and returns how many bytes it
// consumed.
func (c *cstr) feed(p []byte, limit int) int {
	seg, n := p, len(p)
	if i := bytes.IndexByte(p, 0); i >= 0 {
		seg, n = p[:i], i+1
		c.done = true
	}
	if room := limit - len(c.buf); len(seg) > room {
		seg = seg[:max(room, 0)]
		c.trunc = true
	}
	c.buf = append(c.buf, seg...)
	return n
}
