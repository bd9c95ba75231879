package pgwire

import (
	"encoding/binary"
	"math"

	"github.com/nplus1/nplus1/internal/fnv1a"
)

// boundParams are the values of one Bind, kept only with KeepParams.
type boundParams struct {
	formats   []int16
	values    [][]byte // nil entries are NULL
	truncated bool
	size      int // bytes of values
}

// paramValues collects a Bind's format codes and values as they stream by.
type paramValues struct {
	fmts  []byte  // the format codes, 2 bytes each, as sent
	buf   []byte  // the values, concatenated
	ends  []int32 // per parameter: end offset in buf, or -1 for NULL
	trunc bool    // values beyond maxParams were dropped
}

func (v *paramValues) reset() {
	if cap(v.buf) > keepBufferCap {
		v.buf = nil
	}
	v.fmts, v.buf, v.ends, v.trunc = v.fmts[:0], v.buf[:0], v.ends[:0], false
}

// take copies the collected values out, in one allocation for the bytes.
func (v *paramValues) take(nparams int) *boundParams {
	bp := &boundParams{truncated: v.trunc}
	if len(v.fmts) > 0 {
		bp.formats = make([]int16, len(v.fmts)/2)
		for i := range bp.formats {
			bp.formats[i] = int16(binary.BigEndian.Uint16(v.fmts[2*i:]))
		}
	}
	short := len(v.ends) != nparams
	for _, end := range v.ends {
		short = short || int(end) > len(v.buf)
	}
	if v.trunc || short {
		// Over the bound, or the message ended inside a value (malformed:
		// the server rejects it).
		bp.truncated = true
		return bp
	}
	data := append(make([]byte, 0, len(v.buf)), v.buf...) // never nil: '' is not NULL
	bp.size = len(data)
	bp.values = make([][]byte, len(v.ends))
	start := int32(0)
	for i, end := range v.ends {
		if end < 0 {
			continue
		}
		bp.values[i] = data[start:end:end]
		start = end
	}
	return bp
}

// Bind is read field by field so that its parameters are hashed, never kept.
type bindState struct {
	stage   uint8
	need    int    // bytes left in the current field
	num     uint32 // integer being read
	left    int    // parameters still to read
	nparams int
	h       uint64
}

const (
	bindPortal uint8 = iota
	bindStmt
	bindNFmt
	bindFmts
	bindNParams
	bindParamLen
	bindParamVal
	bindRest
)

func (b *bindState) nextParam() {
	if b.left > 0 {
		b.left--
		b.stage, b.need, b.num = bindParamLen, 4, 0
	} else {
		b.stage = bindRest
	}
}

func (t *Tracker) bindBody(p []byte) {
	b := &t.bind
	for len(p) > 0 {
		switch b.stage {
		case bindPortal:
			p = p[t.name.feed(p, maxNameBytes):]
			if t.name.done {
				b.stage = bindStmt
			}
		case bindStmt:
			p = p[t.name2.feed(p, maxNameBytes):]
			if t.name2.done {
				b.stage, b.need, b.num = bindNFmt, 2, 0
			}
		case bindNFmt, bindNParams, bindParamLen:
			for b.need > 0 && len(p) > 0 {
				b.num = b.num<<8 | uint32(p[0])
				if b.stage == bindParamLen {
					b.h = fnv1a.AddByte(b.h, p[0])
				}
				p = p[1:]
				b.need--
			}
			if b.need > 0 {
				return
			}
			switch b.stage {
			case bindNFmt: // counts are unsigned 16-bit (pq_getmsgint(msg, 2))
				b.stage, b.need = bindFmts, 2*int(b.num)
			case bindNParams:
				b.nparams, b.left = int(b.num), int(b.num)
				b.nextParam()
			case bindParamLen:
				if t.keepParams {
					t.keepParamStart(int32(b.num))
				}
				if l := int32(b.num); l > 0 {
					b.stage, b.need = bindParamVal, int(l)
				} else { // NULL (-1) or empty
					b.nextParam()
				}
			}
		case bindFmts, bindParamVal:
			n := min(b.need, len(p))
			b.h = fnv1a.Add(b.h, p[:n])
			if t.keepParams {
				t.keepParamBytes(b.stage, p[:n])
			}
			p = p[n:]
			b.need -= n
			if b.need == 0 {
				if b.stage == bindFmts {
					b.stage, b.need, b.num = bindNParams, 2, 0
				} else {
					b.nextParam()
				}
			}
		default:
			return
		}
	}
}

// keepParamStart notes a parameter of length l (-1: NULL) about to stream by.
func (t *Tracker) keepParamStart(l int32) {
	v := &t.pv
	if v.trunc {
		return
	}
	if l < 0 {
		v.ends = append(v.ends, -1)
		return
	}
	if len(v.buf)+int(l) > t.maxParams {
		v.trunc = true
		return
	}
	v.ends = append(v.ends, int32(len(v.buf))+l)
}

// keepParamBytes keeps format code or value bytes of the Bind being read.
func (t *Tracker) keepParamBytes(stage uint8, p []byte) {
	v := &t.pv
	if stage == bindFmts {
		if len(v.fmts)+len(p) <= 2*math.MaxUint16 {
			v.fmts = append(v.fmts, p...)
		}
		return
	}
	if !v.trunc {
		v.buf = append(v.buf, p...)
	}
}

// HashParams returns the ParamsHash of a Bind with these format codes (as
// sent) and values (nil for NULL): what the Tracker computes as the message
// streams by. It is 0 when there are no values.
func HashParams(formats []int16, values [][]byte) uint64 {
	if len(values) == 0 {
		return 0
	}
	h := fnv1a.Offset
	var b [4]byte
	for _, f := range formats {
		binary.BigEndian.PutUint16(b[:2], uint16(f))
		h = fnv1a.Add(h, b[:2])
	}
	for _, v := range values {
		l := int32(-1)
		if v != nil {
			l = int32(len(v))
		}
		binary.BigEndian.PutUint32(b[:], uint32(l))
		h = fnv1a.Add(h, b[:])
		h = fnv1a.Add(h, v)
	}
	return h
}
