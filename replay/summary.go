package replay

import (
	"math"
	"math/bits"
	"sort"
	"strings"
	"time"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/pgwire"
)

// Bounds of a Summary.
const (
	// DefaultMaxFingerprints bounds the fingerprints a Summary keeps apart;
	// the executions of further ones are added to one "other" entry.
	DefaultMaxFingerprints = 10000
	// maxConnsCounted bounds the set that counts distinct connections.
	maxConnsCounted = 1 << 20
	// maxErrorCodes bounds the SQLSTATEs counted per fingerprint.
	maxErrorCodes = 16
)

// Summary aggregates a replay per fingerprint, like pt-query-digest.
type Summary struct {
	Statements   int64
	Errors       int64
	Connections  int  // distinct connections
	ConnsAtLeast bool // Connections stopped counting at its bound
	Start, End   time.Time
	// Findings counts the findings reported, per kind.
	Findings map[detector.Kind]int
	// Fingerprints are sorted by total time, then calls, largest first.
	Fingerprints []*FingerprintStats
	// Detector is the detector's counters at the end.
	Detector detector.Stats

	max   int
	byID  map[uint64]*FingerprintStats
	byHex map[string]*FingerprintStats
	other *FingerprintStats
	conns map[uint64]struct{}
	// last caches the previous execution's SQL and its statement, so that a
	// run of one statement costs no cache lookup.
	lastSQL string
	lastRes *fingerprint.Result
}

// FingerprintStats is one query shape's line of the summary.
type FingerprintStats struct {
	Fingerprint string // 16 hex digits; "" for statements without SQL text, "other" past the bound
	Query       string // normalized, literal-free
	Calls       int64
	Total, Max  time.Duration
	Rows        int64 // summed over executions that reported a row count
	Errors      int64
	ErrorCodes  map[string]int64
	Findings    map[detector.Kind]int
	hist        histogram
}

// Mean is the mean duration.
func (f *FingerprintStats) Mean() time.Duration {
	if f.Calls == 0 {
		return 0
	}
	return f.Total / time.Duration(f.Calls)
}

// P95 is the 95th percentile of the durations, within the histogram's
// precision (about 3%).
func (f *FingerprintStats) P95() time.Duration { return min(f.hist.quantile(0.95), f.Max) }

// FindingCount is the number of findings about this shape.
func (f *FingerprintStats) FindingCount() int {
	n := 0
	for _, c := range f.Findings {
		n += c
	}
	return n
}

// NewSummary returns an empty Summary keeping at most maxFingerprints apart.
func NewSummary(maxFingerprints int) *Summary {
	if maxFingerprints <= 0 {
		maxFingerprints = DefaultMaxFingerprints
	}
	return &Summary{
		max:      maxFingerprints,
		byID:     make(map[uint64]*FingerprintStats),
		byHex:    make(map[string]*FingerprintStats),
		conns:    make(map[uint64]struct{}),
		Findings: make(map[detector.Kind]int),
	}
}

// statement returns the fingerprinted statement of e, or nil.
func (s *Summary) statement(e *pgwire.Execution, fp *fingerprint.Cache) *fingerprint.Statement {
	if e.SQL == "" {
		return nil
	}
	res := s.lastRes
	if res == nil || e.SQL != s.lastSQL {
		res = fp.OfStrings(e.SQL, fingerprint.Strings(e.StandardStrings))
		s.lastSQL, s.lastRes = e.SQL, res
	}
	if n := len(res.Statements); n > 0 {
		return &res.Statements[min(max(e.StatementIndex, 0), n-1)]
	}
	return nil
}

func (s *Summary) add(e *pgwire.Execution, fp *fingerprint.Cache) {
	s.addStatement(e, s.statement(e, fp))
}

// addStatement counts e, whose statement is st (nil: none).
func (s *Summary) addStatement(e *pgwire.Execution, st *fingerprint.Statement) {
	s.Statements++
	if s.Start.IsZero() || e.Start.Before(s.Start) {
		s.Start = e.Start
	}
	if e.End.After(s.End) {
		s.End = e.End
	}
	if e.Conn != nil && !s.ConnsAtLeast {
		if _, ok := s.conns[e.Conn.ID]; !ok {
			if len(s.conns) >= maxConnsCounted {
				s.ConnsAtLeast = true
			} else {
				s.conns[e.Conn.ID] = struct{}{}
			}
		}
	}
	var id uint64
	if st != nil {
		id = st.ID
	}
	f := s.byID[id]
	if f == nil {
		if len(s.byID) >= s.max {
			if s.other == nil {
				s.other = &FingerprintStats{Fingerprint: "other", Query: "(further query shapes)"}
			}
			f = s.other
		} else {
			f = &FingerprintStats{}
			if st != nil {
				f.Fingerprint, f.Query = st.Hex, st.Normalized
				s.byHex[st.Hex] = f
			} else {
				f.Query = "(statement whose text was not seen)"
			}
			s.byID[id] = f
		}
	}
	d := max(e.Duration(), 0)
	f.Calls++
	f.Total += d
	f.Max = max(f.Max, d)
	f.hist.add(d)
	if e.Rows > 0 {
		f.Rows += e.Rows
	}
	if e.SQLState != "" {
		s.Errors++
		f.Errors++
		if f.ErrorCodes == nil {
			f.ErrorCodes = make(map[string]int64)
		}
		if _, ok := f.ErrorCodes[e.SQLState]; ok || len(f.ErrorCodes) < maxErrorCodes {
			f.ErrorCodes[e.SQLState]++
		}
	}
}

// finding counts a finding (a sink on the analyzer's goroutine).
func (s *Summary) finding(fd *detector.Finding) {
	s.Findings[fd.Kind]++
	if f := s.byHex[fd.Fingerprint]; f != nil {
		if f.Findings == nil {
			f.Findings = make(map[detector.Kind]int)
		}
		f.Findings[fd.Kind]++
	}
}

func (s *Summary) finish(st detector.Stats) {
	s.Detector = st
	s.Connections = len(s.conns)
	s.conns = nil
	s.Fingerprints = s.Fingerprints[:0]
	for _, f := range s.byID {
		s.Fingerprints = append(s.Fingerprints, f)
	}
	if s.other != nil {
		s.Fingerprints = append(s.Fingerprints, s.other)
	}
	sort.Slice(s.Fingerprints, func(i, j int) bool {
		a, b := s.Fingerprints[i], s.Fingerprints[j]
		if a.Total != b.Total {
			return a.Total > b.Total
		}
		if a.Calls != b.Calls {
			return a.Calls > b.Calls
		}
		return strings.Compare(a.Fingerprint, b.Fingerprint) < 0
	})
}

// Add merges executions into the summary by hand (re-execution does).
func (s *Summary) Add(e *pgwire.Execution, fp *fingerprint.Cache) { s.add(e, fp) }

// Finding counts a finding in the summary (re-execution does).
func (s *Summary) Finding(f *detector.Finding) { s.finding(f) }

// Finish sorts the summary; call it once, after the last Add.
func (s *Summary) Finish(st detector.Stats) { s.finish(st) }

// histogram counts durations in log-linear buckets: subBuckets per power of
// two of microseconds, so a quantile is known within 1/subBuckets of its
// value. It costs 2 KB per fingerprint, allocated on first use.
type histogram struct {
	counts *[histBuckets]uint32
	n      uint64
}

const (
	subBits     = 4
	subBuckets  = 1 << subBits
	histOctaves = 40 // 1 µs to about 12 days
	histBuckets = histOctaves * subBuckets
)

func bucketOf(d time.Duration) int {
	us := uint64(d / time.Microsecond)
	if us < subBuckets {
		return int(us)
	}
	oct := bits.Len64(us) - subBits // ≥ 1
	sub := int(us>>uint(oct-1)) & (subBuckets - 1)
	return min(oct*subBuckets+sub, histBuckets-1)
}

// bucketUpper is the largest duration counted in bucket i.
func bucketUpper(i int) time.Duration {
	if i < subBuckets {
		return time.Duration(i+1)*time.Microsecond - 1
	}
	oct, sub := i/subBuckets, i%subBuckets
	lo := uint64(subBuckets+sub) << uint(oct-1)
	return time.Duration(lo+(1<<uint(oct-1)))*time.Microsecond - 1
}

func (h *histogram) add(d time.Duration) {
	if h.counts == nil {
		h.counts = new([histBuckets]uint32)
	}
	if b := &h.counts[bucketOf(d)]; *b < math.MaxUint32 {
		*b++
	}
	h.n++
}

func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 || h.counts == nil {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	var seen uint64
	for i, c := range h.counts {
		seen += uint64(c)
		if seen >= rank {
			return bucketUpper(i)
		}
	}
	return bucketUpper(histBuckets - 1)
}
