//go:build nplus1_relayonly

package proxy

// relayOnly: see relayonly_off.go. This build tracks nothing and finds
// nothing; it exists to measure the relay alone.
const relayOnly = true
