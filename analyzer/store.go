package analyzer

import (
	"sort"
	"sync"
	"time"

	"github.com/nplus1/nplus1/detector"
)

// DefaultStoreSize is how many findings the Store keeps.
const DefaultStoreSize = 10000

// Stored is a finding and the id the Store gave it. Ids start at 1 and grow
// by one per finding for the life of the Store; a cleared finding's id is
// never given again. The event stream sends it as the event id, so that a
// client that reconnects resumes after the last finding it saw.
type Stored struct {
	ID uint64 `json:"id"`
	detector.Finding
}

// Why a backlog is not everything after the id asked for (Backlog.Reset).
const (
	// ResetEvicted: findings made after the id were pushed out of the
	// ring by newer ones (the Store keeps the newest size findings).
	ResetEvicted = "evicted"
	// ResetUnknownID: the id is later than any this Store gave, so it came
	// from another process (ids start over at 1); the backlog is every
	// stored finding.
	ResetUnknownID = "unknown_id"
)

// Backlog is what a feed is given to catch up: the stored findings after an
// id that its filter selects, oldest first.
type Backlog struct {
	Findings []Stored
	// Reset is "" when Findings is every finding after the id that the
	// filter selects, else why it may not be (ResetEvicted,
	// ResetUnknownID).
	Reset string
	// Oldest is the id of the oldest finding stored (0: none).
	Oldest uint64
	// Last is the id of the newest finding when the backlog was taken (0:
	// none yet): with Findings, the feed has had every finding its filter
	// selects up to it, and C gets those after it.
	Last uint64
}

// Store keeps the most recent findings for the HTTP API and fans each new
// one out to live subscribers (Server-Sent Events). It is safe for
// concurrent use.
type Store struct {
	mu      sync.Mutex
	ring    []Stored // guarded by mu; circular, the oldest at head
	head    int      // guarded by mu
	n       int      // guarded by mu; findings stored
	last    uint64   // guarded by mu; the id of the newest finding
	lost    uint64   // guarded by mu; the newest id pushed out of the ring
	subs    map[*Subscription]struct{}
	feeds   map[*Feed]struct{}
	dropped uint64 // guarded by mu; findings a slow Subscription missed
}

// Subscription is a live feed of findings; C is closed by Cancel.
type Subscription struct {
	C     chan detector.Finding // buffered; never closed before Cancel
	store *Store
	once  sync.Once
}

// Cancel ends the subscription.
func (s *Subscription) Cancel() {
	s.once.Do(func() {
		s.store.mu.Lock()
		delete(s.store.subs, s)
		s.store.mu.Unlock()
		close(s.C)
	})
}

// Feed is a live feed of the stored findings a Filter selects, with their
// ids, that loses none while they are in the ring: when its buffer is full,
// the Store stops sending and signals Behind, and Catchup gives what C
// missed from the ring. C is closed by Cancel.
type Feed struct {
	// C gets the findings the filter selects as they are stored, in id
	// order.
	C <-chan Stored
	// Behind gets a value when a finding did not fit in C: nothing more is
	// sent on C until Catchup.
	Behind <-chan struct{}

	c      chan Stored
	lag    chan struct{}
	filter Filter
	behind bool // guarded by store.mu
	store  *Store
	once   sync.Once
}

// Cancel ends the feed.
func (fd *Feed) Cancel() {
	fd.once.Do(func() {
		fd.store.mu.Lock()
		delete(fd.store.feeds, fd)
		close(fd.c)
		fd.store.mu.Unlock()
	})
}

// Catchup empties C and returns the backlog after the id of the last
// finding the caller took (from C or from an earlier backlog); C gets the
// findings stored after the backlog's Last again. It is what a reader does
// when Behind signals.
func (fd *Feed) Catchup(after uint64) Backlog {
	s := fd.store
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(fd.c) > 0 {
		<-fd.c
	}
	for len(fd.lag) > 0 {
		<-fd.lag
	}
	fd.behind = false
	return s.backlog(after, &fd.filter)
}

// offer sends st to the feed when its filter selects it; s.mu is held.
func (fd *Feed) offer(st *Stored) {
	if fd.behind || !fd.filter.Match(&st.Finding) {
		return
	}
	select {
	case fd.c <- *st:
	default:
		fd.behind = true
		select {
		case fd.lag <- struct{}{}:
		default:
		}
	}
}

// NewStore returns a Store that keeps size findings (DefaultStoreSize when
// size <= 0).
func NewStore(size int) *Store {
	if size <= 0 {
		size = DefaultStoreSize
	}
	return &Store{ring: make([]Stored, size), subs: map[*Subscription]struct{}{}, feeds: map[*Feed]struct{}{}}
}

// at returns the i-th oldest stored finding; s.mu is held.
func (s *Store) at(i int) *Stored {
	return &s.ring[(s.head+i)%len(s.ring)]
}

// Finding stores f under the next id and offers it to every subscriber; a
// Subscription whose buffer is full misses it (counted in Dropped), a Feed
// falls behind and catches up.
func (s *Store) Finding(f *detector.Finding) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last++
	st := Stored{ID: s.last, Finding: *f}
	if s.n == len(s.ring) {
		s.lost = s.ring[s.head].ID
		s.ring[s.head] = st
		s.head = (s.head + 1) % len(s.ring)
	} else {
		*s.at(s.n) = st
		s.n++
	}
	for sub := range s.subs {
		select {
		case sub.C <- *f:
		default:
			s.dropped++
		}
	}
	for fd := range s.feeds {
		fd.offer(&st)
	}
}

// List returns the stored findings, oldest first, of the given kind ("" for
// all) and made at or after since (zero for all).
func (s *Store) List(kind detector.Kind, since time.Time) []detector.Finding {
	stored := s.ListWhere(Filter{Kind: kind, Since: since})
	out := make([]detector.Finding, len(stored))
	for i := range stored {
		out[i] = stored[i].Finding
	}
	return out
}

// ListWhere returns the stored findings f selects, oldest first, with their
// ids; never nil.
func (s *Store) ListWhere(f Filter) []Stored {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []Stored{}
	for i := range s.n {
		if st := s.at(i); f.Match(&st.Finding) {
			out = append(out, *st)
		}
	}
	return out
}

// Clear forgets the stored findings.
func (s *Store) Clear() {
	s.ClearWhere(Filter{})
}

// ClearWhere forgets the stored findings f selects, keeping the others in
// order, and returns how many it forgot. Ids are not given again.
func (s *Store) ClearWhere(f Filter) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := 0
	for i := range s.n {
		st := s.at(i)
		if f.Match(&st.Finding) {
			continue
		}
		if i != kept {
			*s.at(kept) = *st
		}
		kept++
	}
	for i := kept; i < s.n; i++ {
		*s.at(i) = Stored{}
	}
	forgot := s.n - kept
	s.n = kept
	return forgot
}

// Subscribe returns a subscription with a buffer of n findings.
func (s *Store) Subscribe(n int) *Subscription {
	sub := &Subscription{C: make(chan detector.Finding, max(n, 1)), store: s}
	s.mu.Lock()
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	return sub
}

// Follow returns a feed, with a buffer of n, of the findings f selects that
// are stored from now on, and a backlog without findings whose Last is
// where the feed starts.
func (s *Store) Follow(n int, f Filter) (*Feed, Backlog) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fd := s.feed(n, f)
	b := Backlog{Last: s.last}
	if s.n > 0 {
		b.Oldest = s.at(0).ID
	}
	return fd, b
}

// SubscribeAfter returns a feed, with a buffer of n, of the findings f
// selects that are stored from now on, and the backlog of those stored
// after the finding with id after. Both are taken under one lock: no
// finding is in both, none after the id is in neither (unless the backlog
// says it was reset).
func (s *Store) SubscribeAfter(after uint64, n int, f Filter) (*Feed, Backlog) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fd := s.feed(n, f)
	return fd, s.backlog(after, &fd.filter)
}

// feed adds a feed; s.mu is held.
func (s *Store) feed(n int, f Filter) *Feed {
	fd := &Feed{c: make(chan Stored, max(n, 1)), lag: make(chan struct{}, 1), filter: f, store: s}
	fd.C, fd.Behind = fd.c, fd.lag
	s.feeds[fd] = struct{}{}
	return fd
}

// backlog returns the stored findings after id after that f selects; s.mu
// is held.
func (s *Store) backlog(after uint64, f *Filter) Backlog {
	b := Backlog{Last: s.last}
	if s.n > 0 {
		b.Oldest = s.at(0).ID
	}
	switch {
	case after > s.last:
		b.Reset, after = ResetUnknownID, 0
	case after < s.lost:
		b.Reset = ResetEvicted
	}
	for i := sort.Search(s.n, func(i int) bool { return s.at(i).ID > after }); i < s.n; i++ {
		if st := s.at(i); f.Match(&st.Finding) {
			b.Findings = append(b.Findings, *st)
		}
	}
	return b
}

// Dropped returns how many findings slow Subscriptions missed (a Feed
// catches up instead).
func (s *Store) Dropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}
