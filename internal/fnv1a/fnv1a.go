// Package fnv1a is the 64-bit FNV-1a hash as nplus1 computes it everywhere
// (statement fingerprints of unparsable SQL, literal and parameter hashes):
// a running value passed through Add, so that a hash can be fed piece by
// piece, from bytes or strings, without allocating. The values are those of
// hash/fnv's New64a and must never change: they are compared between live
// traffic and replays, and recordings store them.
package fnv1a

// The FNV-1a 64 parameters.
const (
	// Offset is the hash of nothing: the value to start from.
	Offset uint64 = 14695981039346656037
	// Prime is the multiplier applied after each byte.
	Prime uint64 = 1099511628211
)

// Add returns h, a running hash, advanced by the bytes of p.
func Add[T ~string | ~[]byte](h uint64, p T) uint64 {
	for i := 0; i < len(p); i++ {
		h ^= uint64(p[i])
		h *= Prime
	}
	return h
}

// AddByte returns h advanced by one byte.
func AddByte(h uint64, c byte) uint64 {
	return (h ^ uint64(c)) * Prime
}

// Sum returns the hash of p: Add(Offset, p).
func Sum[T ~string | ~[]byte](p T) uint64 {
	return Add(Offset, p)
}
