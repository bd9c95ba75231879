package detector

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nplus1/nplus1/fingerprint"
)

// scanAddresses is the Seq Scan of addresses under user_id = $1, on a table
// of rows rows whose indexes lead with indexed.
func scanAddresses(rows int64, indexed ...string) ScanFacts {
	return ScanFacts{Table: "addresses", Rows: rows, FilterColumns: []string{"user_id"}, IndexedColumns: append([]string{"id"}, indexed...)}
}

// runInspected runs events through a detector with cfg (Inspect on), closes
// every window, answers each request it made with answer, and returns the
// requests and every finding of the given kind.
func runInspected(t *testing.T, cfg Config, events []Event, answer func(InspectionRequest) Inspection) ([]InspectionRequest, []Finding) {
	t.Helper()
	cfg.Inspect = true
	d := New(cfg)
	var out []Finding
	var asked []InspectionRequest
	serve := func() {
		for _, r := range d.Wants() {
			asked = append(asked, r)
			out = append(out, d.Inspected(answer(r))...)
		}
	}
	for _, ev := range events {
		out = append(out, d.Observe(ev)...)
		serve()
	}
	out = append(out, d.Flush()...)
	serve()
	var mi []Finding
	for _, f := range out {
		if f.Kind == KindMissingIndex {
			mi = append(mi, f)
		}
	}
	return asked, mi
}

// nPlusOneOfAddresses is an N+1: the orders of a status, then the address
// of each order's user, one query each.
func nPlusOneOfAddresses() *timeline {
	tl := newTimeline()
	tl.q(qOrders, 1, 10)
	tl.loop(qAddress, 10, 1, 0)
	return tl
}

func TestMissingIndex(t *testing.T) {
	cases := []struct {
		name   string
		events func() *timeline
		scans  []ScanFacts
		err    string
		asked  []string // the fingerprints' names asked for
		want   []string // summaries
		check  func(t *testing.T, f Finding)
	}{
		{
			name:   "N+1 lookup on a large table without an index",
			events: nPlusOneOfAddresses,
			scans:  []ScanFacts{scanAddresses(20_000)},
			asked:  []string{"address"},
			want:   []string{"missing_index address n=10 critical"},
			check: func(t *testing.T, f Finding) {
				if f.Index == nil || f.Index.Table != "addresses" || !slices.Equal(f.Index.Columns, []string{"user_id"}) || f.Index.Rows != 20_000 {
					t.Errorf("index advice %+v, want addresses (user_id), 20000 rows", f.Index)
				}
				const create = "CREATE INDEX CONCURRENTLY addresses_user_id_idx ON addresses (user_id)"
				if f.Index.Create != create || !strings.Contains(f.Suggestion, create) {
					t.Errorf("create %q, suggestion %q: want %q in both", f.Index.Create, f.Suggestion, create)
				}
				for _, orm := range []string{"@@index([user_id])", "@Index()", "db_index=True", "add_index :addresses, :user_id", `gorm:"index"`} {
					if !strings.Contains(f.Suggestion, orm) {
						t.Errorf("suggestion lacks %s: %s", orm, f.Suggestion)
					}
				}
				if strings.Contains(f.Suggestion, "foreign key") || f.Index.ForeignKey != "" {
					t.Errorf("no foreign key, but the finding says so: %+v %s", f.Index, f.Suggestion)
				}
				if f.Connection.ID != 1 || f.Fingerprint != qAddress.Hex || f.Query != qAddress.Normalized {
					t.Errorf("finding %+v is not about the loop's shape on conn 1", f)
				}
			},
		},
		{
			name:   "the fixed form: an index leads with the column",
			events: nPlusOneOfAddresses,
			scans:  []ScanFacts{scanAddresses(20_000, "user_id")},
			asked:  []string{"address"},
		},
		{
			name:   "a small table",
			events: nPlusOneOfAddresses,
			scans:  []ScanFacts{scanAddresses(9_999)},
			asked:  []string{"address"},
		},
		{
			name:   "an unindexed foreign key",
			events: nPlusOneOfAddresses,
			scans: []ScanFacts{{Table: "shop.addresses", Rows: 50_000, FilterColumns: []string{"user_id"}, IndexedColumns: []string{"id"},
				ForeignKeys: map[string]string{"user_id": "shop.users"}}},
			asked: []string{"address"},
			want:  []string{"missing_index address n=10 critical"},
			check: func(t *testing.T, f Finding) {
				if f.Index.ForeignKey != "shop.users" || !strings.Contains(f.Suggestion, "user_id is a foreign key to shop.users without an index") {
					t.Errorf("want the foreign key called out: %+v %s", f.Index, f.Suggestion)
				}
				if f.Index.Create != "CREATE INDEX CONCURRENTLY addresses_user_id_idx ON shop.addresses (user_id)" {
					t.Errorf("create %q", f.Index.Create)
				}
			},
		},
		{
			name:   "the inspection failed",
			events: nPlusOneOfAddresses,
			err:    "permission denied",
			scans:  []ScanFacts{scanAddresses(20_000)},
			asked:  []string{"address"},
		},
		{
			name: "a loop of 4 is not hot",
			events: func() *timeline {
				tl := newTimeline()
				tl.q(qOrders, 1, 10)
				tl.loop(qAddress, 4, 1, 0)
				return tl
			},
			scans: []ScanFacts{scanAddresses(20_000)},
		},
		{
			name: "one lookup per request, 60 in a minute",
			events: func() *timeline {
				tl := newTimeline()
				for i := range 60 {
					tl.q(qSession, uint64(1+i), 1)
					tl.wait(900 * time.Millisecond)
				}
				return tl
			},
			scans: []ScanFacts{{Table: "sessions", Rows: 100_000, FilterColumns: []string{"token"}, IndexedColumns: []string{"id"}}},
			asked: []string{"session"},
			want:  []string{"missing_index session n=60 warning"}, // the minute's runs
		},
		{
			name: "59 in a minute are not hot",
			events: func() *timeline {
				tl := newTimeline()
				for i := range 59 {
					tl.q(qSession, uint64(1+i), 1)
					tl.wait(time.Second)
				}
				return tl
			},
			scans: []ScanFacts{{Table: "sessions", Rows: 100_000, FilterColumns: []string{"token"}}},
		},
		{
			name: "a write is never asked for",
			events: func() *timeline {
				tl := newTimeline()
				tl.q(qOrders, 1, 10)
				tl.tx(func() {
					for i := range 10 {
						tl.write(qSetStatus, i, 1)
					}
				})
				return tl
			},
			scans: []ScanFacts{{Table: "orders", Rows: 100_000, FilterColumns: []string{"id"}}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tl := c.events()
			asked, got := runInspected(t, Config{}, tl.events, func(r InspectionRequest) Inspection {
				return Inspection{Fingerprint: r.Fingerprint, Err: c.err, Scans: c.scans}
			})
			var names []string
			for _, r := range asked {
				names = append(names, nameOf(r.Hex))
				if strings.Contains(r.Query, "'") {
					t.Errorf("request %+v holds a literal", r)
				}
			}
			if !slices.Equal(names, c.asked) {
				t.Errorf("asked for %v, want %v", names, c.asked)
			}
			checkSummaries(t, got, c.want)
			if c.check != nil && len(got) == 1 {
				c.check(t, got[0])
			}
		})
	}
}

func nameOf(hex string) string { return names[hex] }

// TestMissingIndexOffByDefault: without Config.Inspect nothing is asked.
func TestMissingIndexOffByDefault(t *testing.T) {
	d := New(Config{})
	for _, ev := range nPlusOneOfAddresses().events {
		d.Observe(ev)
	}
	d.Flush()
	if w := d.Wants(); w != nil {
		t.Errorf("asked for %v without Inspect", w)
	}
	if fs := d.Inspected(Inspection{Fingerprint: qAddress.ID, Scans: []ScanFacts{scanAddresses(20_000)}}); fs != nil {
		t.Errorf("reported %v without Inspect", fs)
	}
}

// TestMissingIndexCooldownAndSafelist: a second hot window within the
// cooldown is counted, not reported; --ignore table:NAME drops it.
func TestMissingIndexCooldownAndSafelist(t *testing.T) {
	tl := nPlusOneOfAddresses()
	tl.wait(2 * time.Second)
	tl.q(qOrders, 2, 10)
	tl.loop(qAddress, 10, 1, 0)
	answer := func(r InspectionRequest) Inspection {
		return Inspection{Fingerprint: r.Fingerprint, Scans: []ScanFacts{scanAddresses(20_000)}}
	}
	asked, got := runInspected(t, Config{}, tl.events, answer)
	if len(asked) != 2 {
		t.Errorf("asked %d times, want once per hot window (the inspector caches)", len(asked))
	}
	checkSummaries(t, got, []string{"missing_index address n=10 critical"})

	ig, err := ParseIgnore("table:addresses")
	if err != nil {
		t.Fatal(err)
	}
	_, got = runInspected(t, Config{Ignore: []Ignore{ig}}, tl.events, answer)
	checkSummaries(t, got, nil)
}

// TestMissingIndexLateAnswer: the answer may come after later windows; it
// completes the pending occurrence with its counts, and an answer for a
// shape nobody asked about reports nothing.
func TestMissingIndexLateAnswer(t *testing.T) {
	d := New(Config{Inspect: true})
	for _, ev := range nPlusOneOfAddresses().events {
		d.Observe(ev)
	}
	d.Flush()
	wants := d.Wants()
	if len(wants) != 1 || wants[0].Fingerprint != qAddress.ID || !slices.Equal(wants[0].Tables, []string{"addresses"}) {
		t.Fatalf("wants %+v, want the addresses lookup", wants)
	}
	if d.Wants() != nil {
		t.Error("Wants did not forget what it returned")
	}
	if fs := d.Inspected(Inspection{Fingerprint: qUser.ID, Scans: []ScanFacts{scanAddresses(20_000)}}); len(fs) != 0 {
		t.Errorf("an answer nobody asked for reported %v", summaries(fs))
	}
	fs := d.Inspected(Inspection{Fingerprint: qAddress.ID, Scans: []ScanFacts{scanAddresses(20_000)}})
	checkSummaries(t, fs, []string{"missing_index address n=10 critical"})
	if fs := d.Inspected(Inspection{Fingerprint: qAddress.ID, Scans: []ScanFacts{scanAddresses(20_000)}}); len(fs) != 0 {
		t.Errorf("a second answer reported again: %v", summaries(fs))
	}
	if st := d.Stats(); st.Reported[KindMissingIndex] != 1 || st.Found[KindMissingIndex] != 1 {
		t.Errorf("stats found %d reported %d, want 1 and 1", st.Found[KindMissingIndex], st.Reported[KindMissingIndex])
	}
}

// TestMissingIndexDeterministic: the same events and answers give the same
// findings, byte for byte in JSON.
func TestMissingIndexDeterministic(t *testing.T) {
	run := func() string {
		tl := nPlusOneOfAddresses()
		tl.trace = ""
		_, got := runInspected(t, Config{}, tl.events, func(r InspectionRequest) Inspection {
			return Inspection{Fingerprint: r.Fingerprint, Scans: []ScanFacts{{Table: "addresses", Rows: 20_000, FilterColumns: []string{"user_id"},
				ForeignKeys: map[string]string{"user_id": "users"}}}}
		})
		return strings.Join(jsonLines(got), "\n")
	}
	a, b := run(), run()
	if a == "" || a != b {
		t.Errorf("two runs differ or found nothing:\n%s\n---\n%s", a, b)
	}
	for _, want := range []string{`"kind":"missing_index"`, `"index":{"table":"addresses","columns":["user_id"],"rows":20000,"foreign_key":"users","create":"CREATE INDEX CONCURRENTLY addresses_user_id_idx ON addresses (user_id)"}`} {
		if !strings.Contains(a, want) {
			t.Errorf("JSON lacks %s:\n%s", want, a)
		}
	}
}

func TestInspectable(t *testing.T) {
	for _, c := range []struct {
		st   string
		want bool
	}{
		{"address", true},
		{"star_user", true},
		{"update", false},
		{"insert_returning", false},
		{"one", false}, // reads no table
	} {
		st := map[string]*fingerprint.Statement{"address": qAddress, "star_user": qStarUser, "update": qUpdate, "insert_returning": qInsertRet, "one": qOne}[c.st]
		if got := inspectable(st); got != c.want {
			t.Errorf("inspectable(%s) = %v, want %v", c.st, got, c.want)
		}
	}
	locked := stmt("locked", "SELECT id FROM orders WHERE id = $1 FOR NO KEY UPDATE", fingerprint.Facts{TablesRead: []string{"orders"}, EqualityColumns: []string{"id"}})
	if inspectable(locked) {
		t.Error("a locking read is inspectable")
	}
}

// searchLoop is an N+1 of searches: the orders of a status, then for each a
// search by status and a name pattern that starts with a wildcard.
func searchLoop() *timeline {
	tl := newTimeline()
	tl.q(qOrders, 1, 10)
	for i := range 10 {
		tl.q(qSearchSecond, uint64(1000+i), 3).ParamWildcard = 1 << 1
	}
	return tl
}

// TestMissingIndexAndLeadingWildcardOneAnswer: a shape pending for both
// rules is asked about once, and one answer settles both; a LIKE in the
// filter is leading_wildcard's, never a missing_index.
func TestMissingIndexAndLeadingWildcardOneAnswer(t *testing.T) {
	for _, c := range []struct {
		name string
		scan ScanFacts
		want []string
	}{
		{
			name: "the status unindexed, the name matched whole",
			scan: ScanFacts{Table: "users", Rows: 50_000, FilterColumns: []string{"status"}, LikeColumns: []string{"name"}, IndexedColumns: []string{"id"}},
			want: []string{"missing_index search_second n=10 critical", "leading_wildcard search_second n=10 warning"},
		},
		{
			name: "the status indexed: the LIKE alone is no missing_index",
			scan: ScanFacts{Table: "users", Rows: 50_000, FilterColumns: []string{"status"}, LikeColumns: []string{"name"}, IndexedColumns: []string{"id", "status"}},
			want: []string{"leading_wildcard search_second n=10 warning"},
		},
		{
			name: "a filter of the LIKE alone",
			scan: ScanFacts{Table: "users", Rows: 50_000, FilterColumns: []string{}, LikeColumns: []string{"name"}, IndexedColumns: []string{"id"}},
			want: []string{"leading_wildcard search_second n=10 warning"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := New(Config{Inspect: true})
			for _, ev := range searchLoop().events {
				d.Observe(ev)
			}
			d.Flush()
			wants := d.Wants()
			if len(wants) != 1 || wants[0].Fingerprint != qSearchSecond.ID {
				t.Fatalf("wants %+v, want one request for the search", wants)
			}
			var got []Finding
			for _, f := range d.Inspected(Inspection{Fingerprint: qSearchSecond.ID, Scans: []ScanFacts{c.scan}}) {
				if f.Kind == KindMissingIndex || f.Kind == KindLeadingWildcard {
					got = append(got, f)
				}
			}
			checkSummaries(t, got, c.want)
			if fs := d.Unanswered(); len(fs) != 0 {
				t.Errorf("Unanswered reported %v after the answer", summaries(fs))
			}
		})
	}
}
