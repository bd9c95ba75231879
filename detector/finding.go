package detector

import (
	"math"
	"strings"
	"time"

	"github.com/nplus1/nplus1/pgwire"
)

// Kind names the rule behind a finding.
type Kind string

// The rules, in the order their findings are reported for one query shape.
const (
	// KindNPlusOne: one SELECT shape run at least NPlusOneThreshold times with
	// at least that many distinct parameter sets in one window; or one
	// INSERT, UPDATE or DELETE shape run that often, one row at a time
	// (Finding.Command names the write).
	KindNPlusOne Kind = "n_plus_one"
	// KindDuplicateQuery: one SELECT shape run at least DuplicateThreshold
	// times with the same parameters in one window.
	KindDuplicateQuery Kind = "duplicate_query"
	// KindUnpaginated: a SELECT with no LIMIT/FETCH that returned at least
	// UnpaginatedRows rows.
	KindUnpaginated Kind = "unpaginated"
	// KindSelectStar: a SELECT whose top-level target list is * or t.*.
	KindSelectStar Kind = "select_star"
	// KindLeadingWildcard: a LIKE or ILIKE whose pattern starts with % or _
	// (a literal, or a bound value the tracker saw start so), which no
	// B-tree index serves.
	KindLeadingWildcard Kind = "leading_wildcard"
	// KindDeepOffset: a SELECT whose OFFSET is at least DeepOffset (a
	// literal, or a bound value the tracker saw be that large).
	KindDeepOffset Kind = "deep_offset"
	// KindSlowQuery: a statement whose server time reached SlowThreshold
	// (off unless set), any command.
	KindSlowQuery Kind = "slow_query"
	// KindLostUpdate: an UPDATE that writes back, unguarded, a value the
	// client computed from a read of the same row by the same key on the
	// same connection just before (a read-modify-write race).
	KindLostUpdate Kind = "lost_update"
	// KindMissingIndex: a read that runs often whose generic plan reads a
	// large table with a Seq Scan under a filter that no index serves (with
	// an inspection connection only).
	KindMissingIndex Kind = "missing_index"
)

// Kinds returns every kind, in report order.
func Kinds() []Kind {
	return []Kind{KindNPlusOne, KindDuplicateQuery, KindUnpaginated, KindSelectStar, KindLeadingWildcard, KindDeepOffset, KindSlowQuery, KindLostUpdate, KindMissingIndex}
}

// Severity says how loudly a finding should be shown.
type Severity string

// Severities, from quiet to loud.
const (
	SeverityInfo     Severity = "info"
	SeverityWarning  Severity = "warning"
	SeverityCritical Severity = "critical"
)

func (s Severity) rank() int {
	switch s {
	case SeverityInfo:
		return 1
	case SeverityWarning:
		return 2
	case SeverityCritical:
		return 3
	}
	return 0
}

// Finding is one reported pattern: the value every sink (console, JSONL,
// HTTP API, metrics) receives. Its JSON form is the documented finding
// format; fields may be added, never renamed.
//
// A Finding never holds a literal value from a query or its parameters: Query
// and Source.Query are the fingerprint's normalized text, Suggestion is built
// from table and column names and counts only.
type Finding struct {
	// Time is the event time at which the finding was made: the end of the
	// last statement of its window (not the wall clock, so replays give the
	// same value).
	Time     time.Time `json:"time"`
	Kind     Kind      `json:"kind"`
	Severity Severity  `json:"severity"`
	// Location is where in the application the statements came from: the
	// route, controller and action, or job that sqlcommenter tags named
	// (Tags keeps them all); nil when the SQL carried none of these.
	Location *Location `json:"location,omitempty"`
	// Fingerprint is the query shape's 64-bit fingerprint, 16 hex digits.
	Fingerprint string `json:"fingerprint"`
	// Query is the normalized (literal-free) text of the shape.
	Query  string   `json:"query"`
	Tables []string `json:"tables,omitempty"`
	// Command is, for an n_plus_one of writes, the statement that ran one
	// row at a time: INSERT, UPDATE or DELETE; empty for reads.
	Command string `json:"command,omitempty"`
	// Count is the number of executions the finding is about: all runs of the
	// shape in the window (n_plus_one, select_star; for writes, those that
	// wrote one row), the runs whose parameters repeated (duplicate_query),
	// the runs that returned too many rows (unpaginated), whose pattern
	// started with a wildcard (leading_wildcard), whose OFFSET was deep
	// (deep_offset), or that wrote back a row read just before
	// (lost_update).
	Count int `json:"count"`
	// DistinctParams is the number of distinct parameter sets among those
	// executions (for duplicate_query: the number of parameter sets that
	// repeated). It is a lower bound once Config.MaxParamsPerShape is reached.
	DistinctParams int `json:"distinct_params,omitempty"`
	// DurationMS is the summed server time of those executions.
	DurationMS float64 `json:"duration_ms"`
	// Rows is, for unpaginated, the largest row count one execution
	// returned; for slow_query, the rows of its slowest execution.
	Rows int64 `json:"rows,omitempty"`
	// MaxDurationMS is, for slow_query, the slowest execution's server time
	// (DurationMS / Count is the mean).
	MaxDurationMS float64 `json:"max_duration_ms,omitempty"`

	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`

	// ApplicationName repeats Connection.ApplicationName at the top level,
	// where filters and dashboards look for it.
	ApplicationName string     `json:"application_name,omitempty"`
	Connection      Connection `json:"connection"`
	// TraceID and Tags come from the sqlcommenter comment, when present.
	TraceID string            `json:"trace_id,omitempty"`
	Tags    map[string]string `json:"tags,omitempty"`

	// Source is, for n_plus_one, the earlier query whose rows the loop
	// walked; nil when no query in the window qualifies (Suggestion says so).
	// For lost_update, the read whose row the update wrote back.
	Source *Source `json:"source,omitempty"`
	// Evidence is, for n_plus_one, why the repeats are called a loop: the
	// loop's keys found in the source's values (data_flow), or only the
	// repetition on a connection that served nothing concurrently.
	Evidence *Evidence `json:"evidence,omitempty"`
	// Index is, for missing_index, the index that is missing: the table,
	// the columns, the table's estimated rows, the foreign key.
	Index *IndexAdvice `json:"index,omitempty"`

	// Suggestion names the fix in one or two sentences.
	Suggestion string `json:"suggestion"`

	// Occurrences counts the windows that showed the same (kind,
	// fingerprint, source) since it was last reported, this one included: 1
	// for a first report, more when a cooldown held some back. The cooldown
	// is per pool scope (user, database, application, client address) for
	// connections, per trace for traced requests. For select_star, which is
	// reported once per fingerprint, it counts every window that showed it
	// so far.
	Occurrences int `json:"occurrences"`
	// Connections is how many connections those occurrences were seen on
	// (counted up to 64); 0 for select_star.
	Connections int `json:"connections,omitempty"`
}

// Location is the code a finding came from, as the application's
// sqlcommenter tags name it.
type Location struct {
	Route      string `json:"route,omitempty"`      // "/orders/:id", "GET /orders/{id}"
	Controller string `json:"controller,omitempty"` // "OrdersController", a Django view
	Action     string `json:"action,omitempty"`     // "show"
	Job        string `json:"job,omitempty"`        // a background job's class
	Framework  string `json:"framework,omitempty"`  // "rails", "django:5.1", "express"
}

// String is the location in one line: "route /orders/:id", "controller
// OrdersController#show", "job ReceiptJob", joined with ", ".
func (l *Location) String() string {
	if l == nil {
		return ""
	}
	var parts []string
	if l.Route != "" {
		parts = append(parts, "route "+l.Route)
	}
	if l.Controller != "" {
		c := "controller " + l.Controller
		if l.Action != "" {
			c += "#" + l.Action
		}
		parts = append(parts, c)
	} else if l.Action != "" {
		parts = append(parts, "action "+l.Action)
	}
	if l.Job != "" {
		parts = append(parts, "job "+l.Job)
	}
	return strings.Join(parts, ", ")
}

// locationOf reads the location tags of a statement's sqlcommenter
// comment; nil when it names no route, controller, action or job.
func locationOf(tags map[string]string) *Location {
	l := &Location{Route: tags["route"], Controller: tags["controller"], Action: tags["action"], Job: tags["job"]}
	if *l == (Location{}) {
		return nil
	}
	l.Framework = tags["framework"]
	return l
}

// Source is the query an N+1 loop iterated over.
type Source struct {
	Fingerprint string `json:"fingerprint"`
	Query       string `json:"query"`
	// Rows is what the source returned: the row count of that execution, or
	// the summed rows of all its executions when it is itself a repeated
	// (nested) loop.
	Rows int64 `json:"rows"`
}

// Connection identifies the client connection of the finding's first
// execution.
type Connection struct {
	ID              uint64 `json:"id"`
	ClientAddr      string `json:"client_addr"`
	User            string `json:"user"`
	Database        string `json:"database"`
	ApplicationName string `json:"application_name"`
}

func connectionOf(c *pgwire.ConnInfo) Connection {
	if c == nil {
		return Connection{}
	}
	return Connection{
		ID:              c.ID,
		ClientAddr:      c.ClientAddr,
		User:            c.User,
		Database:        c.Database,
		ApplicationName: c.ApplicationName,
	}
}

// millis converts a duration to milliseconds with microsecond precision.
func millis(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}
