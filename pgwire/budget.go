package pgwire

import "sync/atomic"

// EvidenceBudget bounds the memory that value evidence (Execution.ParamKeys
// and Execution.Result) takes in a process, between the trackers that
// attach it and the consumer that uses it. One budget is shared by all the
// trackers of a process (TrackerOptions.EvidenceBudget) and by the
// consumer of their executions.
//
// A tracker takes Execution.EvidenceSize bytes before it attaches evidence
// to an execution, and attaches none when the budget refuses (counted in
// TrackerStats.EvidenceDropped). It takes them from a credit of 4 KiB it
// takes from the budget at a time (or, for a larger size or when the budget
// has no 4 KiB to spare, from the budget itself), so that the trackers of
// a busy process do not all write this one counter for every execution;
// Used counts that credit too until the tracker is closed or its
// connection fails. Whoever ends up with the execution Gives
// the same size back when done with its evidence, including when it drops
// the execution unread (a full queue). Evidence never given back stays
// counted: a consumer that forgets to Give ends with no evidence, never
// with unbounded memory.
//
// It is safe for concurrent use. A nil *EvidenceBudget is no bound: Take
// always succeeds, Give does nothing.
type EvidenceBudget struct {
	max     int64
	used    atomic.Int64
	refused atomic.Uint64
}

// NewEvidenceBudget returns a budget of maxBytes (DefaultEvidenceBudgetBytes
// is a sensible size).
func NewEvidenceBudget(maxBytes int64) *EvidenceBudget {
	return &EvidenceBudget{max: maxBytes}
}

// Take reserves n bytes and reports whether they fit.
func (b *EvidenceBudget) Take(n int) bool {
	if b == nil || n <= 0 {
		return true
	}
	if !b.take(n) {
		b.refused.Add(1)
		return false
	}
	return true
}

// take is Take without counting a refusal: a tracker's attempt to take
// credit ahead (see Tracker.takeEvidence).
func (b *EvidenceBudget) take(n int) bool {
	for {
		u := b.used.Load()
		if u+int64(n) > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+int64(n)) {
			return true
		}
	}
}

// Give returns n bytes taken earlier.
func (b *EvidenceBudget) Give(n int) {
	if b == nil || n <= 0 {
		return
	}
	b.used.Add(-int64(n))
}

// Used is the number of bytes taken and not given back.
func (b *EvidenceBudget) Used() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

// Max is the budget's size.
func (b *EvidenceBudget) Max() int64 {
	if b == nil {
		return 0
	}
	return b.max
}

// Refused counts the Takes that did not fit, over all trackers.
func (b *EvidenceBudget) Refused() uint64 {
	if b == nil {
		return 0
	}
	return b.refused.Load()
}
