//go:build !nplus1_relayonly

package proxy

// relayOnly is set in a measurement build (go build -tags nplus1_relayonly)
// whose relay shows nothing to the tracker: the proxy's cost without
// tracking, the floor that bench/ab.sh --pgbouncer compares with PgBouncer.
// Never set in a build that is used.
const relayOnly = false
