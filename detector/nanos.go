package detector

import (
	"math"
	"time"
)

// nanos is an instant of event time in nanoseconds since the Unix epoch.
// An execution's times are converted once, as it enters (Observe, Advance),
// and the state touched for every execution keeps and compares these
// rather than time.Time values, whose Sub and Add handle the monotonic
// clock and overflow at every call. Event times carry no monotonic reading
// (the proxy strips it, replays parse timestamps), so the conversion is
// exact for every instant from 1678 to 2262; instants outside are clamped
// to the ends of that range. Findings keep the events' own time.Time
// values (window.startAt, endAt), zone and all.
//
// noTime is the zero time.Time, "unset": the earliest instant of all, so
// that comparisons order it as they ordered the zero time. sub and add
// saturate as time.Time.Sub does, so that an unset instant never wraps
// around into a set one. A nanos field that may be unset is set to noTime
// when made: the zero nanos is the Unix epoch.
type nanos int64

// noTime is the zero time.Time: unset.
const noTime nanos = math.MinInt64

// Unix seconds within which UnixNano cannot overflow.
const (
	minNanosSec = math.MinInt64/int64(time.Second) + 1
	maxNanosSec = math.MaxInt64/int64(time.Second) - 1
)

// nanosOf converts t, noTime for the zero time.
func nanosOf(t time.Time) nanos {
	if t.IsZero() {
		return noTime
	}
	switch s := t.Unix(); {
	case s < minNanosSec:
		return noTime + 1 // before 1678: the earliest set instant
	case s > maxNanosSec:
		return math.MaxInt64 // after 2262
	}
	return nanos(t.UnixNano())
}

// isZero reports whether n is unset.
func (n nanos) isZero() bool { return n == noTime }

// sub returns the duration n−m as time.Time.Sub does: saturated at the
// smallest or largest Duration when it does not fit, as it never does
// between an unset instant and a set one (the zero time.Time is further
// from every event time than a Duration spans).
func (n nanos) sub(m nanos) time.Duration {
	d := n - m
	if n == noTime || m == noTime || (d > n) != (m < 0) { // unset, or overflow
		return far(n, m)
	}
	return time.Duration(d)
}

// far is n−m when it does not fit a Duration or either is unset.
func far(n, m nanos) time.Duration {
	switch {
	case n == m:
		return 0
	case n < m:
		return math.MinInt64
	}
	return math.MaxInt64
}

// add returns the instant d after n, saturated at the ends of the range:
// below it, at noTime, which no instant is before, as none was before the
// zero time.Time less d.
func (n nanos) add(d time.Duration) nanos {
	s := n + nanos(d)
	if (s > n) != (d > 0) { // overflow
		if d > 0 {
			return math.MaxInt64
		}
		return noTime
	}
	return s
}
