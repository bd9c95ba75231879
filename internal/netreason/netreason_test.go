package netreason

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
)

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&net.DNSError{Err: "no such host", Name: "db.example", IsNotFound: true}, "host name not found"},
		{&net.DNSError{Err: "i/o timeout", Name: "db.example", IsTimeout: true}, "host name lookup timed out"},
		{&net.DNSError{Err: "server misbehaving", Name: "db.example"}, "host name lookup failed"},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, "connection refused"},
		{fmt.Errorf("dial: %w", syscall.EHOSTUNREACH), "host unreachable"},
		{fmt.Errorf("dial: %w", syscall.ENETUNREACH), "host unreachable"},
		{fmt.Errorf("connect: %w", context.DeadlineExceeded), "timed out"},
		{&net.OpError{Op: "dial", Err: os.ErrDeadlineExceeded}, "timed out"},
		{&tls.CertificateVerificationError{Err: errors.New("x509: unknown authority")}, "TLS certificate verification failed"},
		{errors.New("something else"), "connection failed"},
	} {
		if got := Of(tc.err); got != tc.want {
			t.Errorf("Of(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
