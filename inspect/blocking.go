package inspect

import (
	"time"

	"github.com/nplus1/nplus1/detector"
)

// Blocking is the inspector as a replay uses it: Inspect waits for the
// answer (at most its timeout), so that an analysis on the input's clock,
// which may run far faster than the inspector's rate, gets each answer
// where it asked. While the connection is down it answers nothing at once,
// so a replay never waits on a server it cannot reach.
type Blocking struct {
	in      *Inspector
	timeout time.Duration
}

// Blocking returns in as a Blocking inspector that waits at most timeout
// for an answer. Run must be running; one goroutine may call Inspect.
func (in *Inspector) Blocking(timeout time.Duration) *Blocking {
	return &Blocking{in: in, timeout: timeout}
}

// Inspect answers r from the cache, or queues it and waits for its answer;
// ok is false when none came in time or the connection is down.
func (b *Blocking) Inspect(r detector.InspectionRequest) (detector.Inspection, bool) {
	t := time.NewTimer(b.timeout)
	defer t.Stop()
	select {
	case <-b.in.attempted:
	case <-t.C:
		return detector.Inspection{}, false
	}
	if ins, ok := b.in.Inspect(r); ok {
		return ins, true
	}
	if !b.in.Stats().Connected {
		return detector.Inspection{}, false
	}
	for {
		select {
		case ins := <-b.in.results:
			if ins.Fingerprint == r.Fingerprint {
				return ins, true
			}
		case <-t.C:
			return detector.Inspection{}, false
		}
	}
}

// Results is nil: Inspect delivers every answer itself.
func (b *Blocking) Results() <-chan detector.Inspection { return nil }
