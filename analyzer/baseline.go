package analyzer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/nplus1/nplus1/detector"
)

// A baseline is the findings a team has accepted for now: the CI gate
// (--fail-on) fails only on findings that are not in it, and reports the
// entries that no longer show up, so that the file shrinks as they are
// fixed. An entry is a stable key — kind, fingerprint and source
// fingerprint — with the normalized queries for the reviewer; no values.

// BaselineVersion is the version of the baseline file format.
const BaselineVersion = 1

// BaselineKey identifies a finding across runs: the same loop, found again
// tomorrow or in another replay, has the same key.
type BaselineKey struct {
	Kind        detector.Kind
	Fingerprint string
	Source      string // the source's fingerprint; "" when none
}

// KeyOf returns f's baseline key.
func KeyOf(f *detector.Finding) BaselineKey {
	k := BaselineKey{Kind: f.Kind, Fingerprint: f.Fingerprint}
	if f.Source != nil {
		k.Source = f.Source.Fingerprint
	}
	return k
}

// BaselineEntry is one accepted finding in the file.
type BaselineEntry struct {
	Kind        detector.Kind `json:"kind"`
	Fingerprint string        `json:"fingerprint"`
	Source      string        `json:"source,omitempty"`
	// Query and SourceQuery are the normalized statements, for the reader
	// of the file: they are not part of the key.
	Query       string   `json:"query,omitempty"`
	SourceQuery string   `json:"source_query,omitempty"`
	Tables      []string `json:"tables,omitempty"`
}

func (e BaselineEntry) key() BaselineKey {
	return BaselineKey{Kind: e.Kind, Fingerprint: e.Fingerprint, Source: e.Source}
}

func entryOf(f *detector.Finding) BaselineEntry {
	e := BaselineEntry{Kind: f.Kind, Fingerprint: f.Fingerprint, Query: f.Query, Tables: slices.Clone(f.Tables)}
	if f.Source != nil {
		e.Source, e.SourceQuery = f.Source.Fingerprint, f.Source.Query
	}
	return e
}

type baselineFile struct {
	Version  int             `json:"version"`
	Findings []BaselineEntry `json:"findings"`
}

// Baseline is a loaded baseline file; it remembers which entries a run saw.
// It is safe for concurrent use.
type Baseline struct {
	mu      sync.Mutex
	entries []BaselineEntry
	index   map[BaselineKey]int
	seen    []bool
}

// LoadBaseline reads the baseline file at path.
func LoadBaseline(path string) (*Baseline, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, err := ReadBaseline(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// ReadBaseline parses a baseline file: a JSON object with "version": 1 and
// "findings", a list of entries with kind, fingerprint (16 hex digits) and,
// for a finding with a source, source.
func ReadBaseline(r io.Reader) (*Baseline, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var f baselineFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("not a baseline file (want a JSON object with \"version\": %d and \"findings\"; "+
			"write one with --write-baseline): %w", BaselineVersion, err)
	}
	if dec.More() {
		return nil, errors.New("not a baseline file: more than one JSON value")
	}
	if f.Version != BaselineVersion {
		return nil, fmt.Errorf("baseline version %d; this nplus1 reads version %d", f.Version, BaselineVersion)
	}
	b := &Baseline{index: make(map[BaselineKey]int, len(f.Findings))}
	for i, e := range f.Findings {
		if err := e.check(); err != nil {
			return nil, fmt.Errorf("finding %d: %w", i+1, err)
		}
		if _, dup := b.index[e.key()]; dup {
			continue
		}
		b.index[e.key()] = len(b.entries)
		b.entries = append(b.entries, e)
	}
	b.seen = make([]bool, len(b.entries))
	return b, nil
}

func (e BaselineEntry) check() error {
	if !slices.Contains(detector.Kinds(), e.Kind) {
		return fmt.Errorf("unknown kind %q; kinds: %s", e.Kind, kindList())
	}
	if !isHex16(e.Fingerprint) {
		return fmt.Errorf("fingerprint %q: want 16 hex digits, as in a finding's \"fingerprint\"", e.Fingerprint)
	}
	if e.Source != "" && !isHex16(e.Source) {
		return fmt.Errorf("source %q: want 16 hex digits, as in a finding's \"source\".\"fingerprint\", or no source", e.Source)
	}
	return nil
}

func kindList() string {
	var s []string
	for _, k := range detector.Kinds() {
		s = append(s, string(k))
	}
	return strings.Join(s, ", ")
}

func isHex16(s string) bool {
	if len(s) != 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Len returns the number of entries.
func (b *Baseline) Len() int { return len(b.entries) }

// Contains reports whether f's key is in the baseline.
func (b *Baseline) Contains(f *detector.Finding) bool {
	_, ok := b.index[KeyOf(f)]
	return ok
}

// see reports whether f is in the baseline and marks its entry seen.
func (b *Baseline) see(f *detector.Finding) bool {
	i, ok := b.index[KeyOf(f)]
	if ok {
		b.mu.Lock()
		b.seen[i] = true
		b.mu.Unlock()
	}
	return ok
}

// Gone returns the entries no finding of this run matched, in file order:
// fixed, or not exercised by this run.
func (b *Baseline) Gone() []BaselineEntry {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []BaselineEntry
	for i, e := range b.entries {
		if !b.seen[i] {
			out = append(out, e)
		}
	}
	return out
}

// BaselineRecorder is a Sink that collects the distinct keys of the
// findings it gets, to be written as a baseline file.
type BaselineRecorder struct {
	mu      sync.Mutex
	entries map[BaselineKey]BaselineEntry
}

// NewBaselineRecorder returns an empty recorder.
func NewBaselineRecorder() *BaselineRecorder {
	return &BaselineRecorder{entries: make(map[BaselineKey]BaselineEntry)}
}

// Finding records f's key.
func (r *BaselineRecorder) Finding(f *detector.Finding) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.entries[KeyOf(f)]; !ok {
		r.entries[KeyOf(f)] = entryOf(f)
	}
}

// Len returns the number of distinct keys recorded.
func (r *BaselineRecorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.entries)
}

// Write writes the baseline file: entries sorted by kind (report order),
// fingerprint and source, one field per line, so that a change to it reads
// well in a diff.
func (r *BaselineRecorder) Write(w io.Writer) error {
	r.mu.Lock()
	f := baselineFile{Version: BaselineVersion, Findings: make([]BaselineEntry, 0, len(r.entries))}
	for _, e := range r.entries {
		f.Findings = append(f.Findings, e)
	}
	r.mu.Unlock()
	kinds := detector.Kinds()
	slices.SortFunc(f.Findings, func(a, b BaselineEntry) int {
		if c := slices.Index(kinds, a.Kind) - slices.Index(kinds, b.Kind); c != 0 {
			return c
		}
		if c := strings.Compare(a.Fingerprint, b.Fingerprint); c != 0 {
			return c
		}
		return strings.Compare(a.Source, b.Source)
	})
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(f)
}

// WriteFile writes the baseline file at path, replacing it only once the
// new one is complete.
func (r *BaselineRecorder) WriteFile(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".nplus1-baseline-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := r.Write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
