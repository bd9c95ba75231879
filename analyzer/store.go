package analyzer

import (
	"sync"
	"time"

	"github.com/nplus1/nplus1/detector"
)

// DefaultStoreSize is how many findings the Store keeps.
const DefaultStoreSize = 10000

// Store keeps the most recent findings for the HTTP API and fans each new
// one out to live subscribers (Server-Sent Events). It is safe for
// concurrent use.
type Store struct {
	mu      sync.Mutex
	ring    []detector.Finding // guarded by mu; the newest size findings
	next    int                // guarded by mu; where the next one goes
	full    bool               // guarded by mu
	subs    map[*Subscription]struct{}
	dropped uint64 // guarded by mu; findings a slow subscriber missed
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

// NewStore returns a Store that keeps size findings (DefaultStoreSize when
// size <= 0).
func NewStore(size int) *Store {
	if size <= 0 {
		size = DefaultStoreSize
	}
	return &Store{ring: make([]detector.Finding, size), subs: map[*Subscription]struct{}{}}
}

// Finding stores f and offers it to every subscriber; a subscriber whose
// buffer is full misses it (counted in Dropped).
func (s *Store) Finding(f *detector.Finding) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ring[s.next] = *f
	s.next++
	if s.next == len(s.ring) {
		s.next, s.full = 0, true
	}
	for sub := range s.subs {
		select {
		case sub.C <- *f:
		default:
			s.dropped++
		}
	}
}

// List returns the stored findings, oldest first, of the given kind ("" for
// all) and made at or after since (zero for all).
func (s *Store) List(kind detector.Kind, since time.Time) []detector.Finding {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []detector.Finding{}
	add := func(fs []detector.Finding) {
		for _, f := range fs {
			if (kind == "" || f.Kind == kind) && (since.IsZero() || !f.Time.Before(since)) {
				out = append(out, f)
			}
		}
	}
	if s.full {
		add(s.ring[s.next:])
	}
	add(s.ring[:s.next])
	return out
}

// Clear forgets the stored findings.
func (s *Store) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.ring)
	s.next, s.full = 0, false
}

// Subscribe returns a subscription with a buffer of n findings.
func (s *Store) Subscribe(n int) *Subscription {
	sub := &Subscription{C: make(chan detector.Finding, max(n, 1)), store: s}
	s.mu.Lock()
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	return sub
}

// Dropped returns how many findings slow subscribers missed.
func (s *Store) Dropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}
