// Package valuekey turns the values that can be keys — bound parameters,
// literals of a statement's text, columns of result rows — into keyed 64-bit
// digests, so that the detector can prove that a loop's keys were read from
// an earlier result without keeping a single value.
//
// The digest is keyed by secrets drawn at random when the process starts:
// hash/maphash under a random seed for bytes, and for integers (the usual
// key, hashed on every lookup's parameter and row) a multiply-and-fold mix
// of the integer with three random words, the construction of wyhash and of
// Go's own hash of 8-byte keys where the CPU has no AES: a few instructions
// inlined, where maphash.Comparable is a generic call through the map
// type's hasher whose cold lines cost more than the hash in the proxy. The
// secrets are never exported, logged or written anywhere, and digests of two
// processes never compare equal: they are for matching within one process.
//
// Such a mix could be undone from a few digests of known integers, so a
// digest never leaves the process as it is: what writes digests out (a
// recording) writes Seal(k), maphash's runtime AES hash of the digest under
// a seed of its own. Sealing keeps equality (equal digests seal equal,
// distinct ones distinct but by chance), so sealed digests of one process
// compare with each other as the digests did, and a digest that leaked
// could not be tested against likely values offline.
//
// The same key reaches the wire in several forms, and each form is brought to
// one canonical form before it is hashed:
//
//   - integers: 8, '8', +8, 008, and int2/int4/int8 in binary format all
//     become the 64-bit integer 8, hashed under a seed of its own (Int), so
//     that no text can share its digest;
//   - UUIDs: text in any letter case, with or without dashes or braces, and
//     the 16 bytes of the binary format become the lowercase dashed text;
//   - everything else is hashed as its bytes (text format as is, binary
//     format of text types is the same bytes).
//
// NULL, the empty string and values longer than MaxValueBytes are not keys:
// they give None and cost nothing to hash.
package valuekey

import (
	crand "crypto/rand"
	"encoding/binary"
	"hash/maphash"
	"math/bits"
)

// Key is a keyed digest of one value; None is no key.
type Key uint64

// None is the Key of NULL, of an empty value and of a value too long to be a key.
const None Key = 0

// MaxValueBytes is the longest value that is hashed: keys are ids, codes,
// emails and slugs, not documents.
const MaxValueBytes = 64

// Type OIDs whose binary format the package decodes (pg_type.dat).
const (
	OIDInt8 = 20
	OIDInt2 = 21
	OIDInt4 = 23
	OIDUUID = 2950
)

// The secrets of text (a maphash seed) and of integers (intKey): a text's
// digest and an integer's never meet but by chance. sealSeed keys Seal.
var (
	seed     = maphash.MakeSeed()
	intKey   = newIntKey()
	sealSeed = maphash.MakeSeed()
)

// newIntKey draws the integers' secret.
func newIntKey() (k [3]uint64) {
	var b [24]byte
	crand.Read(b[:]) // never fails (crypto/rand says so)
	for i := range k {
		k[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	k[2] |= 1 // a multiplier that keeps every bit of what it folds
	return k
}

// mix is the 128-bit product of a and b folded to 64 bits.
func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func sum(b []byte) Key { return keyOf(maphash.Bytes(seed, b)) }

// keyOf is the Key of a hash h: None is kept for what is not a key, so a
// hash of 0 becomes 1.
func keyOf(h uint64) Key {
	if h == 0 {
		return 1
	}
	return Key(h)
}

// Int is the Key of an integer, whichever form it came in: Text and Binary
// give it for the integers they read.
func Int(v int64) Key {
	x := uint64(v)
	return keyOf(mix(mix(x^intKey[0], x^intKey[1]), intKey[2]))
}

// Text is the Key of a value in text format (a NULL is nil and gives None).
func Text(b []byte) Key {
	if n := len(b); uint(n-1) < 8 && cap(b) >= 8 {
		// An id of up to 8 digits in a buffer that goes on past it (a
		// DataRow's, a Bind's): read as one word, the bytes past b up to
		// its capacity shifted out unread (digits8).
		if v, ok := digits8(binary.LittleEndian.Uint64(b[:8]), n); ok {
			return Int(int64(v))
		}
	} else if n == 0 || n > MaxValueBytes {
		return None
	}
	if v, ok := canonInt(b); ok {
		return Int(v)
	}
	return textOther(b)
}

// textOther is Text for a value that is not an integer.
func textOther(b []byte) Key {
	var buf [40]byte
	if c, ok := canonUUIDText(b, buf[:0]); ok {
		return sum(c)
	}
	return sum(b)
}

// Seal returns the form of k that may leave the process (see the package
// doc): a keyed hash of it that keeps equality; None stays None.
func Seal(k Key) Key {
	if k == None {
		return None
	}
	return keyOf(maphash.Comparable(sealSeed, uint64(k)))
}

// String is Text for a string: a literal's value after unquoting.
func String(s string) Key {
	if len(s) == 0 || len(s) > MaxValueBytes {
		return None
	}
	var b [MaxValueBytes]byte
	return Text(append(b[:0], s...))
}

// Binary is the Key of a value in binary format. oid is its type when known
// (RowDescription, or a Parse that named it), 0 when not: then 2, 4 and 8
// bytes are read as an integer and 16 bytes as a UUID. A value of another
// type read that way only gets a digest that matches nothing.
func Binary(b []byte, oid uint32) Key {
	if len(b) == 0 || len(b) > MaxValueBytes {
		return None
	}
	var buf [40]byte
	switch {
	case (oid == OIDInt2 || oid == 0) && len(b) == 2:
		return Int(int64(int16(binary.BigEndian.Uint16(b))))
	case (oid == OIDInt4 || oid == 0) && len(b) == 4:
		return Int(int64(int32(binary.BigEndian.Uint32(b))))
	case (oid == OIDInt8 || oid == 0) && len(b) == 8:
		return Int(int64(binary.BigEndian.Uint64(b)))
	case (oid == OIDUUID || oid == 0) && len(b) == 16:
		return sum(appendUUID(buf[:0], b))
	}
	return sum(b)
}

// canonInt returns the integer b is when it fits in 64 bits, written with
// an optional sign, leading zeros or surrounding blanks (int8in accepts
// those).
func canonInt(b []byte) (int64, bool) {
	if len(b) <= 18 { // the usual form, plain digits, that cannot overflow
		var u uint64
		for _, c := range b {
			if c-'0' > 9 {
				return canonIntForms(b)
			}
			u = u*10 + uint64(c-'0')
		}
		return int64(u), len(b) > 0
	}
	return canonIntForms(b)
}

// digits8 reads the first n (1 to 8) bytes of x, a word loaded little-endian,
// as decimal digits, eight at a time: they are moved to the top of the word
// and the room below filled with '0's, all eight bytes are tested to be
// digits at once, then pairs, quads and the eight are combined by three
// multiplications.
func digits8(x uint64, n int) (uint64, bool) {
	const zeros = 0x3030303030303030
	s := uint(8-n) * 8
	x = x<<s | zeros>>(64-s) // s = 0: nothing to fill (a shift by 64 is 0)
	if ((x+0x4646464646464646)|(x-zeros))&0x8080808080808080 != 0 {
		return 0, false // a byte is not a digit
	}
	x -= zeros
	x = x*10 + x>>8 // each even byte: the pair it starts
	x = ((x&0x000000FF000000FF)*(100+1000000<<32) + (x>>16&0x000000FF000000FF)*(1+10000<<32)) >> 32
	return x, true
}

// canonIntForms is canonInt for every form int8in accepts.
func canonIntForms(b []byte) (int64, bool) {
	i, j := 0, len(b)
	for i < j && b[i] == ' ' {
		i++
	}
	for j > i && b[j-1] == ' ' {
		j--
	}
	neg := false
	if i < j && (b[i] == '+' || b[i] == '-') {
		neg = b[i] == '-'
		i++
	}
	if i == j || j-i > 20 {
		return 0, false
	}
	var u uint64
	for _, c := range b[i:j] {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if u > (1<<64-1-d)/10 {
			return 0, false
		}
		u = u*10 + d
	}
	switch {
	case neg && u <= 1<<63:
		return -int64(u-1) - 1, true
	case !neg && u < 1<<63:
		return int64(u), true
	}
	return 0, false
}

// canonUUIDText returns the lowercase dashed form of a UUID written the ways
// uuid_in accepts: 32 hex digits, in any case, with dashes between groups of
// four and optionally in braces.
func canonUUIDText(b []byte, dst []byte) ([]byte, bool) {
	if len(b) < 32 || len(b) > 40 {
		return nil, false
	}
	if b[0] == '{' {
		if b[len(b)-1] != '}' {
			return nil, false
		}
		b = b[1 : len(b)-1]
	}
	var raw [16]byte
	n := 0
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == '-' && n%4 == 0 && n > 0 && i+1 < len(b) && b[i+1] != '-' {
			continue
		}
		h, ok := unhex(c)
		if !ok || n == 32 {
			return nil, false
		}
		raw[n/2] |= h << (4 * (1 - n%2))
		n++
	}
	if n != 32 {
		return nil, false
	}
	return appendUUID(dst, raw[:]), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func appendUUID(dst, b []byte) []byte {
	const hexdig = "0123456789abcdef"
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexdig[c>>4], hexdig[c&15])
	}
	return dst
}
