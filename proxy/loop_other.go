//go:build !linux

package proxy

import (
	"errors"
	"sync/atomic"
)

// The event loop (loop_linux.go) uses epoll; elsewhere every session runs on
// goroutine pumps.

const loopSupported = false

type eventLoop struct{ sessions atomic.Int64 }

// loopSession has the field the loop tests read; no session is ever placed
// on a loop here.
type loopSession struct{ l *eventLoop }

func newEventLoop(*Server) (*eventLoop, error) {
	return nil, errors.ErrUnsupported
}

func (*eventLoop) stop() {}

func (c *conn) relayOnLoop(*eventLoop) (error, bool) {
	return errors.ErrUnsupported, false
}

func (*loopSession) fatal(code, msg string) {}

func (*loopSession) close() {}

func (*loopSession) closeWithNotice(code, msg string, onlyIdle bool) {}
