package analyzer

import (
	"fmt"
	"strings"
	"time"

	"github.com/nplus1/nplus1/detector"
)

// Filter selects findings by what a test suite or a dashboard knows of them:
// their kind, when they were made, the application_name of the connection,
// the sqlcommenter trace id and tags. Its zero value selects every finding;
// each field that is set must match, every tag of Tags included.
type Filter struct {
	// Kind keeps one kind ("": all).
	Kind detector.Kind
	// Since keeps the findings made at or after it (zero: all).
	Since time.Time
	// Application keeps the findings of connections with this
	// application_name ("": all).
	Application string
	// Trace keeps the findings of this sqlcommenter trace id ("": all).
	Trace string
	// Tags keeps the findings whose sqlcommenter tags hold every one of
	// these keys with its value.
	Tags []Tag
}

// Tag is one sqlcommenter key and the value a Filter wants for it.
type Tag struct {
	Key, Value string
}

// ParseTag reads a tag filter written KEY:VALUE ("test:checkout adds an
// item"); the value may hold colons of its own, the key may not be empty.
func ParseTag(s string) (Tag, error) {
	k, v, ok := strings.Cut(s, ":")
	if !ok || k == "" {
		return Tag{}, fmt.Errorf("tag %q: want KEY:VALUE, a sqlcommenter key and its value (test:checkout)", s)
	}
	return Tag{Key: k, Value: v}, nil
}

// String is the tag as ParseTag reads it.
func (t Tag) String() string { return t.Key + ":" + t.Value }

// IsZero reports whether f selects every finding.
func (f *Filter) IsZero() bool {
	return f.Kind == "" && f.Since.IsZero() && !f.Scoped() && len(f.Tags) == 0
}

// Scoped reports whether f names an application or a trace: the scopes the
// detector can flush and whose report cooldowns it can reset.
func (f *Filter) Scoped() bool {
	return f.Application != "" || f.Trace != ""
}

// Match reports whether f selects fd.
func (f *Filter) Match(fd *detector.Finding) bool {
	switch {
	case f.Kind != "" && fd.Kind != f.Kind:
		return false
	case !f.Since.IsZero() && fd.Time.Before(f.Since):
		return false
	case f.Application != "" && fd.Connection.ApplicationName != f.Application:
		return false
	case f.Trace != "" && fd.TraceID != f.Trace:
		return false
	}
	for _, t := range f.Tags {
		if v, ok := fd.Tags[t.Key]; !ok || v != t.Value {
			return false
		}
	}
	return true
}
