package metrics

import (
	"cmp"
	"math"
	"slices"
	"strings"

	"github.com/nplus1/nplus1/detector"
)

// lifetime is what a tracked fingerprint did since it was tracked, in or
// out of the top-K: its counts, its failed executions and a histogram of
// its durations over durationBuckets (the last slot is +Inf).
type lifetime struct {
	counts
	errors  uint64
	hist    []uint32 // made by the first execution
	slowest float64  // seconds
}

// execution counts one execution's duration and outcome; add counts the
// rest.
func (l *lifetime) execution(seconds float64, failed bool) {
	if failed {
		l.errors++
	}
	l.slowest = max(l.slowest, seconds)
	if l.hist == nil {
		l.hist = make([]uint32, len(durationBuckets)+1)
	}
	i, _ := slices.BinarySearch(durationBuckets, seconds) // the first bound >= seconds
	if l.hist[i] < math.MaxUint32 {
		l.hist[i]++
	}
}

// FingerprintStats is one tracked fingerprint as the top-K ranking counts
// it: the numbers behind its nplus1_fingerprint_* series, counted since it
// was tracked whether or not it had series of its own.
type FingerprintStats struct {
	// Fingerprint is the 16 hex digits of the fingerprint label.
	Fingerprint string `json:"fingerprint"`
	Command     string `json:"command"`
	// Query is the normalized (literal-free) query, cut to 120 characters
	// like its label; Tables its tables, sorted.
	Query  string   `json:"query"`
	Tables []string `json:"tables,omitempty"`
	Calls  uint64   `json:"calls"`
	// TotalMS and MeanMS are the summed and mean server time of its
	// executions; P95MS is the 95th percentile, interpolated within the
	// buckets of nplus1_query_duration_seconds as histogram_quantile does,
	// and never above the slowest execution.
	TotalMS float64 `json:"total_ms"`
	MeanMS  float64 `json:"mean_ms"`
	P95MS   float64 `json:"p95_ms"`
	// Rows are the rows its successful SELECTs and FETCHes returned.
	Rows   uint64 `json:"rows"`
	Errors uint64 `json:"errors"`
	// Findings counts the findings reported about it, FindingsByKind by
	// kind (kinds without findings are left out).
	Findings       uint64            `json:"findings"`
	FindingsByKind map[string]uint64 `json:"findings_by_kind,omitempty"`
	// TopK: it has series of its own on /metrics (as of the last scrape).
	TopK bool `json:"top_k"`
}

// Fingerprints returns the fingerprints the top-K ranking tracks (at most
// Options.Tracked), by total time, longest first. It is safe to call while
// the analyzer observes and a scrape collects.
func (e *Exporter) Fingerprints() []FingerprintStats {
	t := e.top
	t.mu.Lock()
	out := make([]FingerprintStats, 0, t.entries.Len())
	for _, en := range t.entries.All {
		out = append(out, en.stats())
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b FingerprintStats) int {
		return cmp.Or(cmp.Compare(b.TotalMS, a.TotalMS), cmp.Compare(a.Fingerprint, b.Fingerprint))
	})
	return out
}

// Query returns the normalized query of a tracked fingerprint, cut to 120
// characters like its label, without making it more recently seen; "" when
// it is not tracked.
func (e *Exporter) Query(id uint64) string {
	e.top.mu.Lock()
	defer e.top.mu.Unlock()
	if en, ok := e.top.entries.Peek(id); ok {
		return en.query
	}
	return ""
}

// Evictions returns how many fingerprints the ranking forgot because its
// bound was reached (nplus1_fingerprint_ranking_evictions_total).
func (e *Exporter) Evictions() uint64 {
	e.top.mu.Lock()
	defer e.top.mu.Unlock()
	return e.top.evictions
}

// stats is the entry's FingerprintStats; the caller holds the lock.
func (en *entry) stats() FingerprintStats {
	l := &en.life
	s := FingerprintStats{
		Fingerprint: en.hex,
		Command:     en.command,
		Query:       en.query,
		Calls:       l.calls,
		TotalMS:     millis(l.seconds),
		P95MS:       millis(min(l.quantile(0.95), l.slowest)),
		Rows:        l.rows,
		Errors:      l.errors,
		TopK:        en.member,
	}
	if en.tables != "" {
		s.Tables = strings.Split(en.tables, ",")
	}
	if l.calls > 0 {
		s.MeanMS = millis(l.seconds / float64(l.calls))
	}
	kinds := detector.Kinds()
	for i, n := range l.findings { // by kindIndex, the order of detector.Kinds
		if k := kinds[i]; n > 0 {
			if s.FindingsByKind == nil {
				s.FindingsByKind = make(map[string]uint64, numKinds)
			}
			s.FindingsByKind[string(k)] = n
			s.Findings += n
		}
	}
	return s
}

// quantile estimates the q-quantile of the durations, in seconds, as
// Prometheus's histogram_quantile does: linear within the bucket that holds
// it, from 0 in the first; in the +Inf bucket, the highest finite bound.
func (l *lifetime) quantile(q float64) float64 {
	var total uint64
	for _, n := range l.hist {
		total += uint64(n)
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var below uint64
	for i, n := range l.hist {
		if float64(below+uint64(n)) < rank || n == 0 {
			below += uint64(n)
			continue
		}
		if i == len(durationBuckets) {
			return durationBuckets[i-1]
		}
		lo := 0.0
		if i > 0 {
			lo = durationBuckets[i-1]
		}
		return lo + (durationBuckets[i]-lo)*(rank-float64(below))/float64(n)
	}
	return durationBuckets[len(durationBuckets)-1]
}

// millis converts seconds to milliseconds, rounded to the microsecond.
func millis(seconds float64) float64 {
	return math.Round(seconds*1e6) / 1e3
}
