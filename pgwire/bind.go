package pgwire

import (
	"bytes"
	"encoding/binary"
	"math"

	"github.com/nplus1/nplus1/internal/fnv1a"
	"github.com/nplus1/nplus1/internal/valuekey"
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
	ev      bool // value evidence: t.bk is filled too
	bad     bool // an invalid parameter length: the server rejects the Bind
	need    int  // bytes left in the current field
	num     uint32
	left    int // parameters still to read
	nparams int
	h       uint64

	// The parameter bits (paramBits) of the values read so far, the
	// format codes they need, and the value being read.
	bits paramBits
	nfmt int
	fpos int
	bin  uint64 // binary format codes among the first 64 parameters
	val  valueScan
}

// paramBits are one bit per bound parameter, bit i for $i+1 (the first 64):
// what the detector may know of a value without seeing it (see
// Execution.ParamWildcard and ParamLarge).
type paramBits struct {
	wild, large uint64
}

// LargeParam is the least integer a parameter's ParamLarge bit stands for:
// an OFFSET from it on is deep (the detector's default deep_offset
// threshold).
const LargeParam = 1000

// valueScan reads one parameter value as it streams by, for its bits: its
// first byte, and whether it is an integer (decimal text; int2, int4 or
// int8 in binary) of at least LargeParam.
type valueScan struct {
	idx    int    // the parameter, from 0
	n, pos int    // its length and the bytes read
	v      uint64 // binary: the bytes read, big-endian
	sig    int    // text: the digits read after leading zeros
	digits bool
	notInt bool
}

// maxIntText is the longest text value read as an integer (int8's 19
// digits and a sign).
const maxIntText = 20

// largeDigits is the number of significant decimal digits from which a
// text integer is at least LargeParam.
const largeDigits = 4

// bindKeys is the value evidence of the Bind being read (Tracker.evidence).
type bindKeys struct {
	out  bindEvidence // what the Bind carries to its portal
	nfmt int          // parameter format codes
	fpos int          // format code bytes read
	bin  uint64       // parameters in binary format (the first maxParamKeys)
	idx  int          // parameter being read
	vlen int          // its length
	nv   int          // its bytes in Tracker.bindVal
	oids []uint32     // the statement's parameter types, when known
	// st is the statement the Bind names, when looked is set: bindOIDs
	// looked it up, and feEnd need not again.
	st     *stmt
	looked bool
	nres   int // result format codes
	rpos   int // result format code bytes read
}

const (
	bindPortal uint8 = iota
	bindStmt
	bindNFmt
	bindFmts
	bindNParams
	bindParamLen
	bindParamVal
	bindNRes // result format codes: read only for evidence
	bindRes
	bindRest
)

func (b *bindState) nextParam() {
	if b.left > 0 {
		b.left--
		b.stage, b.need, b.num = bindParamLen, 4, 0
	} else if b.ev {
		b.stage, b.need, b.num = bindNRes, 2, 0
	} else {
		b.stage = bindRest
	}
}

// complete reports whether every parameter was read and none was malformed:
// a Bind the server accepts as far as its values go.
func (b *bindState) complete() bool {
	return !b.bad && (b.stage == bindNRes || b.stage == bindRes || b.stage == bindRest)
}

func (t *Tracker) bindBody(p []byte) {
	b, k := &t.bind, &t.bk
	if b.stage == bindPortal && len(p) == t.fe.left && !t.keepParams && t.bindWhole(p) {
		return // the usual case: the whole message in one chunk
	}
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
		case bindNFmt, bindNParams, bindParamLen, bindNRes:
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
				b.nfmt = int(b.num)
				if b.ev {
					k.nfmt = int(b.num)
				}
			case bindNParams:
				b.nparams, b.left = int(b.num), int(b.num)
				if b.ev {
					t.bindKeysStart()
				}
				b.nextParam()
			case bindParamLen:
				l := int32(b.num)
				if l < -1 {
					// exec_bind_message reads the value with
					// pq_getmsgbytes, which rejects a negative length:
					// the Bind fails (08P01), nothing past it matters.
					b.bad, b.stage = true, bindRest
					continue
				}
				if t.keepParams {
					t.keepParamStart(l)
				}
				if l > 0 {
					b.stage, b.need = bindParamVal, int(l)
					b.val = valueScan{idx: b.nparams - b.left - 1, n: int(l)}
					if b.ev {
						k.vlen, k.nv = int(l), 0
					}
				} else { // NULL (-1) or empty: not a key
					if b.ev {
						k.idx++
					}
					b.nextParam()
				}
			case bindNRes:
				b.stage, b.need = bindRes, 2*int(b.num)
				k.nres = int(b.num)
				if b.need == 0 {
					b.stage = bindRest
				}
			}
		case bindFmts, bindParamVal:
			n := min(b.need, len(p))
			b.h = fnv1a.Add(b.h, p[:n])
			if b.stage == bindFmts {
				b.bin |= codeMask(p[:n], b.fpos)
				b.fpos += n
			} else if b.val.idx < 64 {
				b.scanValue(p[:n])
			}
			if t.keepParams {
				t.keepParamBytes(b.stage, p[:n])
			}
			if b.ev {
				if b.stage == bindFmts {
					k.bin |= codeMask(p[:n], k.fpos)
					k.fpos += n
				} else {
					t.bindValue(p[:n])
				}
			}
			p = p[n:]
			b.need -= n
			if b.need == 0 {
				if b.stage == bindFmts {
					b.stage, b.need, b.num = bindNParams, 2, 0
				} else {
					if b.ev {
						k.idx++
					}
					b.nextParam()
				}
			}
		case bindRes:
			n := min(b.need, len(p))
			k.out.resFmt |= codeMask(p[:n], k.rpos)
			k.rpos += n
			p = p[n:]
			if b.need -= n; b.need == 0 {
				if k.nres == 1 && k.out.resFmt&1 != 0 {
					k.out.resFmt = ^uint64(0) // one code for all
				}
				b.stage = bindRest
			}
		default:
			return
		}
	}
}

// bindWhole is bindBody for a Bind whose body p is whole in one chunk: it
// leaves what bindBody leaves, read in one pass without the steps that wait
// for more bytes. It reads nothing and returns false for a message that is
// not well formed (a count or a length past its end, a negative length):
// bindBody then reads it as it reads every message.
func (t *Tracker) bindWhole(p []byte) bool {
	b, k := &t.bind, &t.bk
	// Find the fields, and check that they are within the message.
	i := bytes.IndexByte(p, 0)
	if i < 0 {
		return false
	}
	j := bytes.IndexByte(p[i+1:], 0) + i + 1
	if j <= i || len(p)-(j+1) < 2 {
		return false
	}
	q := p[j+1:]
	nfmt := int(binary.BigEndian.Uint16(q))
	if len(q) < 2+2*nfmt+2 {
		return false
	}
	fmts := q[2 : 2+2*nfmt]
	q = q[2+2*nfmt:]
	nparams := int(binary.BigEndian.Uint16(q))
	params := q[2:]
	rest := params
	for range nparams {
		if len(rest) < 4 {
			return false
		}
		l := int32(binary.BigEndian.Uint32(rest))
		if l < -1 || int64(l) > int64(len(rest)-4) {
			return false
		}
		rest = rest[4+max(l, 0):]
	}
	var res []byte // result format codes: read only for the evidence
	if b.ev {
		if len(rest) < 2 {
			return false
		}
		n := 2 * int(binary.BigEndian.Uint16(rest))
		if len(rest)-2 < n {
			return false
		}
		res = rest[2 : 2+n]
	}

	// Read them.
	t.name.feed(p[:i+1], maxNameBytes)
	t.name2.feed(p[i+1:j+1], maxNameBytes)
	b.nfmt, b.nparams, b.stage = nfmt, nparams, bindRest
	b.bin = codeMask(fmts, 0)
	h := fnv1a.Add(b.h, fmts)
	if b.ev {
		k.nfmt, k.bin = nfmt, b.bin
		t.bindKeysStart()
	}
	rest = params
	for idx := range nparams {
		l := int32(binary.BigEndian.Uint32(rest))
		h = fnv1a.Add(h, rest[:4])
		rest = rest[4:]
		if l <= 0 { // NULL or empty: no bits, not a key
			continue
		}
		v := rest[:l]
		rest = rest[l:]
		h = fnv1a.Add(h, v)
		if idx < 64 {
			bit := uint64(1) << idx
			wild, large := valueBits(v, b.binaryParam(bit))
			if wild {
				b.bits.wild |= bit
			}
			if large {
				b.bits.large |= bit
			}
		}
		if b.ev && idx < len(k.out.keys) && l <= valuekey.MaxValueBytes {
			k.idx = idx
			k.out.keys[idx] = k.paramKey(v)
		}
	}
	b.h = h
	if b.ev {
		k.out.resFmt = codeMask(res, 0)
		if len(res) == 2 && k.out.resFmt&1 != 0 {
			k.out.resFmt = ^uint64(0) // one code for all
		}
	}
	return true
}

// binaryParam reports whether the parameter of bit (among the first 64) is
// in binary format: its own code, or the one code given for all.
func (b *bindState) binaryParam(bit uint64) bool {
	return b.bin&bit != 0 || b.nfmt == 1 && b.bin&1 != 0
}

// scanValue reads the bytes p of the value being read for its parameter
// bits, and sets them once the value is whole.
func (b *bindState) scanValue(p []byte) {
	v := &b.val
	bit := uint64(1) << v.idx
	binary := b.binaryParam(bit)
	if v.pos == 0 && len(p) == v.n { // the whole value in one chunk: the common case
		wild, large := valueBits(p, binary)
		if wild {
			b.bits.wild |= bit
		}
		if large {
			b.bits.large |= bit
		}
		return
	}
	if v.feed(p, binary) {
		b.bits.wild |= bit
	}
	if v.pos == v.n && v.large(binary) {
		b.bits.large |= bit
	}
}

// valueBits returns the bits of a whole value (not empty).
func valueBits(p []byte, binary bool) (wild, large bool) {
	c := p[0]
	wild = c == '%' || c == '_'
	if binary {
		var n int64
		switch len(p) {
		case 2:
			n = int64(int16(uint16(p[0])<<8 | uint16(p[1])))
		case 4:
			n = int64(int32(uint32(p[0])<<24 | uint32(p[1])<<16 | uint32(p[2])<<8 | uint32(p[3])))
		case 8:
			for _, c := range p {
				n = n<<8 | int64(c)
			}
		default:
			return wild, false
		}
		return wild, n >= LargeParam
	}
	if len(p) < largeDigits || len(p) > maxIntText {
		return wild, false
	}
	i, sig := 0, 0
	if c == '+' {
		i = 1
	}
	for ; i < len(p); i++ {
		d := p[i] - '0'
		if d > 9 {
			if p[i] == '_' && i > 0 {
				continue
			}
			return wild, false // not an integer: a text that starts with %, say
		}
		if sig > 0 || d != 0 {
			sig++
		}
	}
	return false, sig >= largeDigits
}

// feed reads the next bytes p (not empty) of the value and reports whether
// they start it with % or _.
func (v *valueScan) feed(p []byte, binary bool) (wild bool) {
	start := v.pos
	v.pos += len(p)
	wild = start == 0 && (p[0] == '%' || p[0] == '_')
	switch {
	case v.notInt:
	case binary:
		if v.n != 2 && v.n != 4 && v.n != 8 {
			v.notInt = true
			break
		}
		x := v.v
		for _, c := range p {
			x = x<<8 | uint64(c)
		}
		v.v, v.digits = x, true
	case v.n > maxIntText:
		v.notInt = true
	default:
		sig, digits := v.sig, v.digits
		for i, c := range p {
			switch {
			case c >= '1' && c <= '9', c == '0' && sig > 0:
				sig++
				digits = true
			case c == '0':
				digits = true // a leading zero
			case c == '+' && start+i == 0, c == '_' && digits:
			default:
				v.notInt = true
				return wild
			}
		}
		v.sig, v.digits = sig, digits
	}
	return wild
}

// large reports whether the whole value read is an integer of at least
// LargeParam.
func (v *valueScan) large(binary bool) bool {
	if v.notInt || !v.digits {
		return false
	}
	if !binary {
		return v.sig >= largeDigits
	}
	n := int64(v.v)
	switch v.n {
	case 2:
		n = int64(int16(v.v))
	case 4:
		n = int64(int32(v.v))
	}
	return n >= LargeParam
}

// ParamBits returns the ParamWildcard and ParamLarge bits of a Bind with
// these format codes (as sent) and values (nil for NULL): what the Tracker
// computes as the message streams by. Readers that keep the values (a
// recording) can give the detector the same bits.
func ParamBits(formats []int16, values [][]byte) (wild, large uint64) {
	for i, val := range values {
		if i >= 64 {
			break
		}
		if len(val) == 0 {
			continue
		}
		binary := len(formats) == 1 && formats[0] != 0 || len(formats) > 1 && i < len(formats) && formats[i] != 0
		v := valueScan{idx: i, n: len(val)}
		if v.feed(val, binary) {
			wild |= 1 << i
		}
		if v.large(binary) {
			large |= 1 << i
		}
	}
	return wild, large
}

// bindKeysStart is called when the parameter count of a Bind is read: the
// format codes and the statement's name are known, the keys can be filled.
func (t *Tracker) bindKeysStart() {
	k, n := &t.bk, t.bind.nparams
	if k.nfmt == 1 && k.bin&1 != 0 {
		k.bin = ^uint64(0) // one code for all
	}
	if k.bin != 0 {
		// Only a binary value's digest depends on its type: with text
		// values (libpq's and node-postgres' way) the statement is looked
		// up once, at the end of the message, as without evidence.
		k.oids = t.bindOIDs(t.name2.buf)
	}
	if n > 0 {
		k.out.keys = t.allocKeys(min(n, maxParamKeys))
	}
}

// codeMask returns the bits of the non-zero (binary) format codes among
// the bytes p of a list of 16-bit codes, p starting at byte pos of the list.
func codeMask(p []byte, pos int) uint64 {
	var m uint64
	for i, c := range p {
		if k := (pos + i) / 2; c != 0 && k < 64 {
			m |= 1 << k
		}
	}
	return m
}

// bindValue hashes the bytes p of the parameter being read; values longer
// than valuekey.MaxValueBytes are not keys and cost nothing.
func (t *Tracker) bindValue(p []byte) {
	k := &t.bk
	if k.idx >= len(k.out.keys) || k.vlen > valuekey.MaxValueBytes {
		return
	}
	if k.nv == 0 && len(p) == k.vlen { // whole in this chunk: no copy
		k.out.keys[k.idx] = k.paramKey(p)
		return
	}
	k.nv += copy(t.bindVal[k.nv:], p)
	if k.nv == k.vlen {
		k.out.keys[k.idx] = k.paramKey(t.bindVal[:k.vlen])
	}
}

// paramKey is the key of the value v of the parameter being read.
func (k *bindKeys) paramKey(v []byte) valuekey.Key {
	if k.bin>>k.idx&1 == 0 {
		return valuekey.Text(v)
	}
	var oid uint32
	if k.idx < len(k.oids) {
		oid = k.oids[k.idx]
	}
	return valuekey.Binary(v, oid)
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
