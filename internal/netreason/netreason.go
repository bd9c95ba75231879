// Package netreason says in words why a connection to a server failed, for
// messages shown to people: the kind of failure, without the resolver's or
// the local addresses that net's errors carry.
package netreason

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// Of returns the kind of network failure err is ("connection refused",
// "timed out", ...), or "connection failed" when it is none it knows.
func Of(err error) string {
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var ne net.Error
	switch {
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return "host name not found"
	case errors.As(err, &dnsErr) && dnsErr.IsTimeout:
		return "host name lookup timed out"
	case errors.As(err, &dnsErr):
		return "host name lookup failed"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	case errors.As(err, &certErr):
		return "TLS certificate verification failed"
	}
	return "connection failed"
}
