package pgwire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"unsafe"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/nplus1/nplus1/internal/valuekey"
)

// Value evidence: ParamKeys and Result.

const (
	oidText    = 25
	oidFloat8  = 701
	oidVarchar = 1043
)

func field(name string, oid uint32, format int16) pgproto3.FieldDescription {
	return pgproto3.FieldDescription{Name: []byte(name), DataTypeOID: oid, DataTypeSize: -1, Format: format}
}

func rowDescOf(fields ...pgproto3.FieldDescription) *pgproto3.RowDescription {
	return &pgproto3.RowDescription{Fields: fields}
}

func row(vals ...[]byte) *pgproto3.DataRow { return &pgproto3.DataRow{Values: vals} }

func i2(v int16) []byte { return binary.BigEndian.AppendUint16(nil, uint16(v)) }
func i4(v int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }
func i8(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }
func s(v string) []byte { return []byte(v) }

var (
	uuidBin  = []byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
	uuidText = "{12345678-9ABC-def0-0123-456789abcdef}"
	longVal  = bytes.Repeat([]byte("k"), valuekey.MaxValueBytes+1)
)

func tk(v string) valuekey.Key { return valuekey.Text([]byte(v)) }

func bindF(portal, stmt string, pfmt []int16, rfmt []int16, params ...[]byte) *pgproto3.Bind {
	return &pgproto3.Bind{DestinationPortal: portal, PreparedStatement: stmt, ParameterFormatCodes: pfmt,
		Parameters: params, ResultFormatCodes: rfmt}
}

func parseT(name, sql string, oids ...uint32) *pgproto3.Parse {
	return &pgproto3.Parse{Name: name, Query: sql, ParameterOIDs: oids}
}

var evOpts = TrackerOptions{Evidence: true}

// evRun runs script in every chunking, checks that they agree, and returns
// the whole-message run.
func evRun(t *testing.T, script []trStep, opts TrackerOptions) *trRun {
	t.Helper()
	var first *trRun
	for i, c := range []chunker{whole, byteByByte, randomChunks(5), randomChunks(11)} {
		r := runScript(t, script, opts, c)
		if r.err != nil {
			t.Fatalf("chunking %d: step %d: %v", i, r.errI, r.err)
		}
		r.tr.Close()
		if first == nil {
			first = r
			continue
		}
		if d := diffEvidence(first.got, r.got); d != "" {
			t.Fatalf("chunking %d changed the evidence: %s", i, d)
		}
	}
	return first
}

func diffEvidence(a, b []*Execution) string {
	if len(a) != len(b) {
		return fmt.Sprintf("%d executions, then %d", len(a), len(b))
	}
	for i := range a {
		if a[i].ParamsHash != b[i].ParamsHash || a[i].ParamWildcard != b[i].ParamWildcard || a[i].ParamLarge != b[i].ParamLarge {
			return fmt.Sprintf("#%d ParamsHash, ParamWildcard, ParamLarge %x %b %b, then %x %b %b", i,
				a[i].ParamsHash, a[i].ParamWildcard, a[i].ParamLarge, b[i].ParamsHash, b[i].ParamWildcard, b[i].ParamLarge)
		}
		if !slices.Equal(a[i].ParamKeys, b[i].ParamKeys) || (a[i].ParamKeys == nil) != (b[i].ParamKeys == nil) {
			return fmt.Sprintf("#%d ParamKeys %v, then %v", i, a[i].ParamKeys, b[i].ParamKeys)
		}
		if d := diffResult(a[i].Result, b[i].Result); d != "" {
			return fmt.Sprintf("#%d: %s", i, d)
		}
	}
	return ""
}

func diffResult(a, b *ResultKeys) string {
	if (a == nil) != (b == nil) {
		return fmt.Sprintf("Result %+v, then %+v", a, b)
	}
	if a == nil {
		return ""
	}
	if !slices.Equal(a.Columns, b.Columns) || a.Truncated != b.Truncated || a.Width() != b.Width() || a.Rows() != b.Rows() {
		return fmt.Sprintf("Result %+v, then %+v", a, b)
	}
	for c := range a.Width() {
		if !slices.Equal(a.Column(c), b.Column(c)) {
			return fmt.Sprintf("column %d: %v, then %v", c, a.Column(c), b.Column(c))
		}
	}
	return ""
}

func wantResult(t *testing.T, what string, got *ResultKeys, cols []string, trunc bool, keys ...[]valuekey.Key) {
	t.Helper()
	want := NewResultKeys(cols, keys, trunc)
	if keys == nil {
		want = nil
	}
	if d := diffResult(got, want); d != "" {
		t.Errorf("%s: got %s", what, d)
	}
	if got != nil {
		checkResultShape(t, what, got)
	}
}

func TestTrackerEvidenceParams(t *testing.T) {
	const sql = "select * from t where a = $1"
	script := []trStep{
		fe(parse("s", sql), describe('S', "s"), sync_),
		be(parseComplete, paramDesc, noData, rfq('I')),
		// 0: no format codes: all text; '', NULL, long, int with blanks, uuid in braces
		fe(bindF("", "s", nil, nil, s(" 008"), s(""), nil, longVal, s(uuidText), s("abc")), execute("", 0), sync_),
		be(bindComplete, cc("SELECT 0"), rfq('I')),
		// 1: one code for all: binary int2, int4, int8, uuid, other
		fe(bindF("", "s", []int16{1}, nil, i2(8), i4(-8), i8(1<<40), uuidBin, s("abc")), execute("", 0), sync_),
		be(bindComplete, cc("SELECT 0"), rfq('I')),
		// 2: per parameter
		fe(bindF("", "s", []int16{0, 1, 0, 1}, nil, s("8"), i8(8), nil, longVal), execute("", 0), sync_),
		be(bindComplete, cc("SELECT 0"), rfq('I')),
		// 3: no parameters
		fe(bindF("", "s", nil, nil), execute("", 0), sync_),
		be(bindComplete, cc("SELECT 0"), rfq('I')),
	}
	r := evRun(t, script, evOpts)
	if len(r.got) != 4 {
		t.Fatalf("got %d executions", len(r.got))
	}
	want := [][]valuekey.Key{
		{tk("8"), valuekey.None, valuekey.None, valuekey.None, valuekey.Binary(uuidBin, 0), tk("abc")},
		{tk("8"), tk("-8"), tk("1099511627776"), tk("12345678-9abc-def0-0123-456789abcdef"), tk("abc")},
		{tk("8"), tk("8"), valuekey.None, valuekey.None},
		nil,
	}
	for i, e := range r.got {
		if !slices.Equal(e.ParamKeys, want[i]) || (e.ParamKeys == nil) != (want[i] == nil) {
			t.Errorf("#%d: ParamKeys %v, want %v", i, e.ParamKeys, want[i])
		}
		if e.Result != nil {
			t.Errorf("#%d: Result %+v for no rows", i, e.Result)
		}
	}
	if k := r.got[0].ParamKeys[4]; k != valuekey.Text(s("12345678-9abc-def0-0123-456789abcdef")) {
		t.Errorf("uuid text in braces: %v", k)
	}
}

// A Parse that names the parameter types decides how binary values are
// read, also when the Bind follows it in the same pipeline.
func TestTrackerEvidenceParamTypes(t *testing.T) {
	f := i8(0x4020000000000000) // 8.0 as a float8
	script := []trStep{
		fe(parseT("", "select $1, $2", oidFloat8, 0), bindF("", "", []int16{1}, nil, f, f), execute("", 0), sync_),
		be(parseComplete, bindComplete, cc("SELECT 0"), rfq('I')),
		// the statement, confirmed, keeps its types
		fe(bindF("", "", []int16{1}, nil, f, f), execute("", 0), sync_),
		be(bindComplete, cc("SELECT 0"), rfq('I')),
		// a new Parse without types, in the same pipeline as its Bind
		fe(parseT("", "select $1, $2"), bindF("", "", []int16{1}, nil, f, f), execute("", 0), sync_),
		be(parseComplete, bindComplete, cc("SELECT 0"), rfq('I')),
		// named, types on the statement; a failed re-Parse does not change them
		fe(parseT("n", "select $1::text", oidText), sync_),
		be(parseComplete, rfq('I')),
		fe(parseT("n", "select $1::text"), sync_),
		be(errResp("42P05"), rfq('I')),
		fe(bindF("", "n", []int16{1}, nil, i4(7)), execute("", 0), sync_),
		be(bindComplete, cc("SELECT 0"), rfq('I')),
	}
	r := evRun(t, script, evOpts)
	if len(r.got) != 5 {
		t.Fatalf("got %d executions: %s", len(r.got), diffEvs(evs(r.got), nil))
	}
	asFloat, asInt := valuekey.Binary(f, oidFloat8), valuekey.Binary(f, 0)
	if asFloat == asInt {
		t.Fatal("float8 and int8 readings agree; the test proves nothing")
	}
	for i, want := range [][]valuekey.Key{{asFloat, asInt}, {asFloat, asInt}, {asInt, asInt}} {
		if got := r.got[i].ParamKeys; !slices.Equal(got, want) {
			t.Errorf("#%d: ParamKeys %v, want %v", i, got, want)
		}
	}
	if got, want := r.got[4].ParamKeys, []valuekey.Key{valuekey.Binary(i4(7), oidText)}; !slices.Equal(got, want) {
		t.Errorf("named: ParamKeys %v, want %v (read as text bytes)", got, want)
	}
}

// The results of a simple Query, one per statement.
func TestTrackerEvidenceSimple(t *testing.T) {
	script := []trStep{
		fe(query("select id, name from a; insert into b values (1); select 1 where false; select x from c")),
		be(rowDescOf(field("id", valuekey.OIDInt4, 0), field("name", oidText, 0)),
			row(s("1"), s("ann")), row(s("2"), nil), row(s("3"), longVal),
			cc("SELECT 3"), cc("INSERT 0 1"),
			rowDescOf(field("?column?", valuekey.OIDInt4, 0)), cc("SELECT 0"),
			rowDescOf(field("x", valuekey.OIDUUID, 0)), row(s(uuidText)), cc("SELECT 1"),
			rfq('I')),
		// a binary cursor: FETCH's RowDescription says binary
		fe(query("fetch 2 from cur")),
		be(rowDescOf(field("id", valuekey.OIDInt8, 1)), row(i8(8)), row(i8(-1)), cc("FETCH 2"), rfq('I')),
		// an error after some rows: no Result
		fe(query("select 1/(3-i) from generate_series(1,5) i")),
		be(rowDescOf(field("?column?", valuekey.OIDInt4, 0)), row(s("0")), errResp("22012"), rfq('I')),
		// an empty query between results
		fe(query("")),
		be(emptyQuery, rfq('I')),
	}
	r := evRun(t, script, evOpts)
	if len(r.got) != 6 {
		t.Fatalf("got %d executions", len(r.got))
	}
	wantResult(t, "select id, name", r.got[0].Result, []string{"id", "name"}, false,
		[]valuekey.Key{tk("1"), tk("2"), tk("3")}, []valuekey.Key{tk("ann"), valuekey.None, valuekey.None})
	wantResult(t, "insert", r.got[1].Result, nil, false)
	wantResult(t, "select 0 rows", r.got[2].Result, nil, false)
	wantResult(t, "select x", r.got[3].Result, []string{"x"}, false,
		[]valuekey.Key{valuekey.Binary(uuidBin, valuekey.OIDUUID)})
	wantResult(t, "fetch binary", r.got[4].Result, []string{"id"}, false, []valuekey.Key{tk("8"), tk("-1")})
	wantResult(t, "error", r.got[5].Result, nil, false)
	for _, e := range r.got {
		if e.ParamKeys != nil {
			t.Errorf("simple query with ParamKeys %v", e.ParamKeys)
		}
	}
}

// The extended protocol: a described portal (formats from its
// RowDescription), and a statement described once whose portals are not
// (pgx's statement cache): its RowDescription with the Bind's formats.
func TestTrackerEvidenceExtended(t *testing.T) {
	const sql = "select id, ref, code from t where owner = $1"
	desc := func(f0, f1, f2 int16) *pgproto3.RowDescription {
		return rowDescOf(field("id", valuekey.OIDInt8, f0), field("ref", valuekey.OIDUUID, f1), field("code", oidVarchar, f2))
	}
	rows := func(bin bool) []pgproto3.Message {
		if bin {
			return []pgproto3.Message{row(i8(10), uuidBin, s("a")), row(i8(11), nil, s("b"))}
		}
		return []pgproto3.Message{row(s("10"), s(uuidText), s("a")), row(s("11"), nil, s("b"))}
	}
	wantKeys := [][]valuekey.Key{
		{tk("10"), tk("11")},
		{valuekey.Binary(uuidBin, valuekey.OIDUUID), valuekey.None},
		{tk("a"), tk("b")},
	}
	cols := []string{"id", "ref", "code"}
	msgs := func(ms ...any) []pgproto3.Message {
		var out []pgproto3.Message
		for _, m := range ms {
			switch m := m.(type) {
			case pgproto3.Message:
				out = append(out, m)
			case []pgproto3.Message:
				out = append(out, m...)
			}
		}
		return out
	}
	modes := []struct {
		name   string
		script []trStep
		n      int
	}{
		{"cache statement", []trStep{ // Parse+Describe S once, then Bind+Execute
			fe(parse("stmtcache_1", sql), describe('S', "stmtcache_1"), sync_),
			be(parseComplete, paramDesc, desc(0, 0, 0), rfq('I')),
			fe(bindF("", "stmtcache_1", []int16{1}, []int16{1, 1, 0}, i8(5)), execute("", 0), sync_),
			be(msgs(bindComplete, rows(true), cc("SELECT 2"), rfq('I'))...),
			fe(bindF("", "stmtcache_1", []int16{1}, []int16{1, 1, 0}, i8(5)), execute("", 0), sync_),
			be(msgs(bindComplete, rows(true), cc("SELECT 2"), rfq('I'))...),
		}, 2},
		{"cache describe", []trStep{ // Parse+Describe S unnamed once, then Parse with types+Bind+Describe P+Execute
			fe(parse("", sql), describe('S', ""), sync_),
			be(parseComplete, paramDesc, desc(0, 0, 0), rfq('I')),
			fe(parseT("", sql, valuekey.OIDInt8), bindF("", "", []int16{1}, []int16{1, 1, 0}, i8(5)), describe('P', ""), execute("", 0), sync_),
			be(msgs(parseComplete, bindComplete, desc(1, 1, 0), rows(true), cc("SELECT 2"), rfq('I'))...),
			fe(parseT("", sql, valuekey.OIDInt8), bindF("", "", []int16{1}, []int16{1, 1, 0}, i8(5)), describe('P', ""), execute("", 0), sync_),
			be(msgs(parseComplete, bindComplete, desc(1, 1, 0), rows(true), cc("SELECT 2"), rfq('I'))...),
		}, 2},
		{"describe exec", []trStep{ // Parse+Describe S unnamed, then Bind+Execute, each time
			fe(parse("", sql), describe('S', ""), sync_),
			be(parseComplete, paramDesc, desc(0, 0, 0), rfq('I')),
			fe(bindF("", "", []int16{1}, []int16{1, 1, 0}, i8(5)), execute("", 0), sync_),
			be(msgs(bindComplete, rows(true), cc("SELECT 2"), rfq('I'))...),
			fe(parse("", sql), describe('S', ""), sync_),
			be(parseComplete, paramDesc, desc(0, 0, 0), rfq('I')),
			fe(bindF("", "", []int16{1}, []int16{1, 1, 0}, i8(5)), execute("", 0), sync_),
			be(msgs(bindComplete, rows(true), cc("SELECT 2"), rfq('I'))...),
		}, 2},
		{"exec", []trStep{ // Parse+Bind (text)+Describe P+Execute
			fe(parse("", sql), bindF("", "", nil, nil, s("5")), describe('P', ""), execute("", 0), sync_),
			be(msgs(parseComplete, bindComplete, desc(0, 0, 0), rows(false), cc("SELECT 2"), rfq('I'))...),
			fe(parse("", sql), bindF("", "", nil, nil, s("5")), describe('P', ""), execute("", 0), sync_),
			be(msgs(parseComplete, bindComplete, desc(0, 0, 0), rows(false), cc("SELECT 2"), rfq('I'))...),
		}, 2},
		{"one result format for all", []trStep{
			fe(parse("s", sql), describe('S', "s"), sync_),
			be(parseComplete, paramDesc, desc(0, 0, 0), rfq('I')),
			fe(bindF("", "s", nil, []int16{1}, s("5")), execute("", 0), sync_),
			be(msgs(bindComplete, row(i8(10), uuidBin, s("a")), row(i8(11), nil, s("b")), cc("SELECT 2"), rfq('I'))...),
		}, 1},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			r := evRun(t, m.script, evOpts)
			if len(r.got) != m.n {
				t.Fatalf("got %d executions, want %d", len(r.got), m.n)
			}
			for i, e := range r.got {
				wantResult(t, fmt.Sprint("execution ", i), e.Result, cols, false, wantKeys...)
				if !slices.Equal(e.ParamKeys, []valuekey.Key{tk("5")}) {
					t.Errorf("execution %d: ParamKeys %v, want the key of 5", i, e.ParamKeys)
				}
			}
			// The description is read once and shared.
			if a, b := r.got[0].Result, r.got[len(r.got)-1].Result; a != nil && b != nil && &a.Columns[0] != &b.Columns[0] {
				t.Errorf("the columns of a repeated statement were not shared")
			}
		})
	}
}

// What is unknown gives no Result: a statement described with NoData, a
// portal of an unknown statement, a portal described with NoData.
func TestTrackerEvidenceUnknown(t *testing.T) {
	script := []trStep{
		fe(parse("s", "delete from t returning id"), describe('S', "s"), sync_),
		be(parseComplete, paramDesc, noData, rfq('I')),
		fe(bindF("", "s", nil, nil, s("1")), execute("", 0), sync_),
		be(bindComplete, row(s("1")), cc("DELETE 1"), rfq('I')),
		fe(bindF("", "never", nil, nil, s("1")), execute("", 0), sync_),
		be(bindComplete, row(s("1")), cc("SELECT 1"), rfq('I')),
		fe(parse("", "select 1"), bindF("", "", nil, nil), describe('P', ""), execute("", 0), sync_),
		be(parseComplete, bindComplete, noData, row(s("1")), cc("SELECT 1"), rfq('I')),
	}
	r := evRun(t, script, evOpts)
	if len(r.got) != 3 {
		t.Fatalf("got %d executions", len(r.got))
	}
	for i, e := range r.got {
		if e.Result != nil {
			t.Errorf("#%d: Result %+v", i, e.Result)
		}
	}
	if !slices.Equal(r.got[1].ParamKeys, []valuekey.Key{tk("1")}) {
		t.Errorf("unknown statement: ParamKeys %v", r.got[1].ParamKeys)
	}
}

// A suspended portal: each Execute gets the rows it returned; the Bind's
// keys are shared.
func TestTrackerEvidenceSuspended(t *testing.T) {
	script := []trStep{
		fe(parse("", "select id from t where g = $1"), bindF("p", "", nil, nil, s("7")), describe('P', "p"),
			execute("p", 2), execute("p", 2), sync_),
		be(parseComplete, bindComplete, rowDescOf(field("id", valuekey.OIDInt4, 0)),
			row(s("1")), row(s("2")), suspended, row(s("3")), cc("SELECT 1"), rfq('I')),
	}
	r := evRun(t, script, evOpts)
	if len(r.got) != 2 {
		t.Fatalf("got %d executions", len(r.got))
	}
	wantResult(t, "first", r.got[0].Result, []string{"id"}, false, []valuekey.Key{tk("1"), tk("2")})
	wantResult(t, "second", r.got[1].Result, []string{"id"}, false, []valuekey.Key{tk("3")})
	if &r.got[0].ParamKeys[0] != &r.got[1].ParamKeys[0] {
		t.Error("a portal's executions do not share ParamKeys")
	}
}

func TestTrackerEvidenceCaps(t *testing.T) {
	var ps [][]byte
	for i := range 70 {
		ps = append(ps, []byte(fmt.Sprint(i)))
	}
	script := []trStep{
		fe(query("select a, b, c from t")),
		be(rowDescOf(field("a", oidText, 0), field("b", oidText, 0), field("c", oidText, 0)),
			row(s("1"), s("x"), s("p")), row(s("2"), s("y"), s("q")), row(s("3"), s("z"), s("r")),
			cc("SELECT 3"), rfq('I')),
		fe(query("select a from t")),
		be(rowDescOf(field("a", oidText, 0)), row(s("1")), row(s("2")), cc("SELECT 2"), rfq('I')),
		// 70 parameters: the first 64 are keyed
		fe(bindF("", "", nil, nil, ps...), execute("", 0), sync_),
		be(bindComplete, cc("INSERT 0 1"), rfq('I')),
	}
	r := evRun(t, script, TrackerOptions{Evidence: true, MaxEvidenceRows: 2, MaxEvidenceColumns: 2})
	if len(r.got) != 3 {
		t.Fatalf("got %d executions", len(r.got))
	}
	wantResult(t, "3x3 capped at 2x2", r.got[0].Result, []string{"a", "b"}, true,
		[]valuekey.Key{tk("1"), tk("2")}, []valuekey.Key{tk("x"), tk("y")})
	wantResult(t, "2x1", r.got[1].Result, []string{"a"}, false, []valuekey.Key{tk("1"), tk("2")})
	if st := r.tr.Stats(); st.EvidenceTruncated != 1 || st.EvidenceDropped != 0 {
		t.Errorf("stats %+v, want 1 truncated", st)
	}
	if k := r.got[2].ParamKeys; len(k) != maxParamKeys || k[63] != tk("63") || r.got[2].NumParams != 70 {
		t.Errorf("70 parameters: %d keys (of %d), last %v", len(k), r.got[2].NumParams, k[len(k)-1])
	}
}

func TestTrackerEvidenceBudget(t *testing.T) {
	script := []trStep{
		fe(query("select a from t")),
		be(rowDescOf(field("a", oidText, 0)), row(s("1")), row(s("2")), cc("SELECT 2"), rfq('I')),
		fe(parse("", "select $1"), bindF("", "", nil, nil, s("1")), execute("", 0), sync_),
		be(parseComplete, bindComplete, cc("SELECT 0"), rfq('I')),
		fe(query("select a, b from t")),
		be(rowDescOf(field("a", oidText, 0), field("b", oidText, 0)), row(s("1"), s("2")), cc("SELECT 1"), rfq('I')),
	}
	first := resultSize(1, 2)
	b := NewEvidenceBudget(int64(first + 8)) // the first two fit, not the third
	r := runScript(t, script, TrackerOptions{Evidence: true, EvidenceBudget: b}, whole)
	if r.err != nil || len(r.got) != 3 {
		t.Fatalf("got %d executions, %v", len(r.got), r.err)
	}
	if r.got[0].Result == nil || r.got[0].EvidenceSize() != first || r.got[0].Result.Size() != first {
		t.Errorf("first: size %d (Result.Size %d), want %d", r.got[0].EvidenceSize(), r.got[0].Result.Size(), first)
	}
	if r.got[1].ParamKeys == nil || r.got[1].EvidenceSize() != 8 {
		t.Errorf("second: ParamKeys %v", r.got[1].ParamKeys)
	}
	if r.got[2].Result != nil || r.got[2].ParamKeys != nil || r.got[2].EvidenceSize() != 0 {
		t.Errorf("third: evidence attached beyond the budget: %+v", r.got[2].Result)
	}
	if st := r.tr.Stats(); st.EvidenceDropped != 1 {
		t.Errorf("stats %+v, want 1 dropped", st)
	}
	if b.Used() != int64(first+8) || b.Refused() != 1 {
		t.Errorf("budget used %d, refused %d", b.Used(), b.Refused())
	}
	for _, e := range r.got {
		b.Give(e.EvidenceSize())
	}
	if b.Used() != 0 {
		t.Errorf("budget used %d after everything was given back", b.Used())
	}
	var nilBudget *EvidenceBudget
	if !nilBudget.Take(1 << 40) {
		t.Error("a nil budget refused")
	}
	nilBudget.Give(1)
}

// Without Evidence nothing is attached, and nothing else changes.
func TestTrackerEvidenceOff(t *testing.T) {
	for _, tc := range trCases {
		opts := tc.opts
		opts.Evidence = true
		on := runScript(t, tc.script, opts, whole)
		off := runScript(t, tc.script, tc.opts, whole)
		if (on.err == nil) != (off.err == nil) {
			t.Errorf("%s: errors %v and %v", tc.name, on.err, off.err)
		}
		if d := diffEvs(evs(on.got), evs(off.got)); d != "" {
			t.Errorf("%s: evidence changed the executions:%s", tc.name, d)
		}
		if on.tr.Stats().Evictions != off.tr.Stats().Evictions {
			t.Errorf("%s: evidence changed the evictions: %+v, %+v", tc.name, on.tr.Stats(), off.tr.Stats())
		}
		for _, e := range off.got {
			if e.ParamKeys != nil || e.Result != nil {
				t.Errorf("%s: evidence without Evidence: %v %+v", tc.name, e.ParamKeys, e.Result)
			}
		}
	}
}

// A negative parameter length other than -1 makes the server reject the
// Bind (pq_getmsgbytes: "insufficient data left in message"): no keys, no
// kept values, and the hash of what was read.
func TestTrackerBindBadLength(t *testing.T) {
	body := []byte("\x00\x00\x00\x00\x00\x02\xff\xff\xff\xfe\x00\x00\x00\x01a\x00\x00")
	bad := trStep{raw: append([]byte{'B', 0, 0, 0, byte(4 + len(body))}, body...)}
	script := []trStep{
		fe(parse("", "select $1, $2")),
		bad,
		fe(execute("", 0), sync_),
		be(parseComplete, errResp("08P01"), rfq('I')),
	}
	for _, c := range []chunker{whole, byteByByte} {
		r := runScript(t, script, TrackerOptions{Evidence: true, KeepParams: true}, c)
		if r.err != nil || len(r.got) != 1 {
			t.Fatalf("got %d executions, %v", len(r.got), r.err)
		}
		e := r.got[0]
		if e.SQLState != "08P01" || e.Params != nil || !e.ParamsTruncated || e.ParamKeys != nil || e.ParamsHash == 0 {
			t.Errorf("bad Bind: %+v", e)
		}
	}
}

// The statements' byte budget counts the descriptions and types kept on them.
func TestTrackerEvidenceStatementCost(t *testing.T) {
	script := []trStep{
		fe(parseT("s", "select $1", valuekey.OIDInt8), describe('S', "s"), sync_),
		be(parseComplete, paramDesc, rowDescOf(field("a", oidText, 0)), rfq('I')),
	}
	r := runScript(t, script, evOpts, whole)
	st := r.tr.lookupStmt("s")
	if st == nil || st.desc == nil || !slices.Equal(st.types.get(), []uint32{valuekey.OIDInt8}) {
		t.Fatalf("statement %+v", st)
	}
	if got, want := r.tr.stmtBytes(), len("select $1")+4+st.desc.size(); got != want {
		t.Errorf("statement bytes %d, want %d", got, want)
	}
}

// With evidence, a repeated statement of 50 rows allocates its Execution
// and its Result (a header and its digests: three allocations; its
// ParamKeys come from the arena), nothing per row.
func TestTrackerEvidenceAllocs(t *testing.T) {
	enc := func(msgs ...pgproto3.Message) []byte { return trStep{msgs: msgs}.bytes(t) }
	tr := NewTracker(&ConnInfo{ID: 1}, func(*Execution) {}, evOpts)
	const sql = "select id, a, b, c, d from t where g = $1"
	desc := rowDescOf(field("id", valuekey.OIDInt8, 0), field("a", oidText, 0), field("b", oidText, 0),
		field("c", valuekey.OIDInt4, 0), field("d", valuekey.OIDUUID, 0))
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tr.Frontend(enc(parse("s", sql), describe('S', "s"), sync_), trBase))
	must(tr.Backend(enc(parseComplete, paramDesc, desc, rfq('I')), trBase))
	feb := enc(bindF("", "s", []int16{1}, []int16{1}, i8(42)), execute("", 0), sync_)
	var rows []pgproto3.Message
	rows = append(rows, bindComplete)
	for i := range 50 {
		rows = append(rows, row(i8(int64(i)), s("alpha"), s("beta"), i4(int32(i)), uuidBin))
	}
	rows = append(rows, cc("SELECT 50"), rfq('I'))
	beb := enc(rows...)
	allocs := testing.AllocsPerRun(100, func() {
		must(tr.Frontend(feb, trBase))
		must(tr.Backend(beb, trBase))
	})
	if allocs != 3 {
		t.Errorf("%v allocations per 50-row statement, want 3", allocs)
	}
}

// The budget is shared by the trackers of a process and their consumer.
func TestEvidenceBudgetConcurrent(t *testing.T) {
	b := NewEvidenceBudget(1000)
	done := make(chan int)
	for range 4 {
		go func() {
			took := 0
			for range 10000 {
				if b.Take(7) {
					took++
					b.Give(7)
				}
			}
			done <- took
		}()
	}
	for range 4 {
		<-done
	}
	if b.Used() != 0 || b.Max() != 1000 {
		t.Errorf("used %d of %d after every Take was given back", b.Used(), b.Max())
	}
	if !b.Take(1000) || b.Take(1) || b.Refused() == 0 {
		t.Errorf("the budget's bound does not hold: used %d", b.Used())
	}
}

func TestTrackerEvidenceColumnsLimit(t *testing.T) {
	o := TrackerOptions{MaxEvidenceColumns: 1000}
	o.setDefaults()
	if o.MaxEvidenceColumns != MaxEvidenceColumnsLimit || o.MaxEvidenceRows != DefaultMaxEvidenceRows {
		t.Errorf("options %+v", o)
	}
}

// A repeated RowDescription is known by its digest; one that differs in a
// name, a type or a format code is read again, whichever came before it.
func TestTrackerEvidenceDescriptionChanges(t *testing.T) {
	descs := []*pgproto3.RowDescription{
		rowDescOf(field("id", valuekey.OIDInt8, 0)),
		rowDescOf(field("id", valuekey.OIDInt8, 1)),
		rowDescOf(field("ref", valuekey.OIDInt8, 1)),
		rowDescOf(field("ref", valuekey.OIDInt4, 1)),
		rowDescOf(field("ref", valuekey.OIDInt4, 1)),
		rowDescOf(field("id", valuekey.OIDInt8, 0)),
	}
	vals := [][]byte{s("10"), i8(10), i8(10), i4(10), i4(10), s("10")}
	var script []trStep
	for i, d := range descs {
		rfmt := []int16{d.Fields[0].Format}
		script = append(script,
			fe(parse("", "select id from t where owner = $1"), bindF("", "", nil, rfmt, s("5")), describe('P', ""), execute("", 0), sync_),
			be(parseComplete, bindComplete, d, row(vals[i]), cc("SELECT 1"), rfq('I')))
	}
	r := evRun(t, script, evOpts)
	if len(r.got) != len(descs) {
		t.Fatalf("got %d executions, want %d", len(r.got), len(descs))
	}
	for i, e := range r.got {
		wantResult(t, fmt.Sprint("execution ", i), e.Result, []string{string(descs[i].Fields[0].Name)}, false,
			[]valuekey.Key{tk("10")})
	}
	if a, b := r.got[3].Result, r.got[4].Result; &a.Columns[0] != &b.Columns[0] {
		t.Errorf("a repeated description was not shared")
	}
}

// A lookup's evidence allocates nothing of its own: its parameters' keys,
// its row's digests and their ResultKeys come from the tracker's arena, a
// chunk at a time, and the Execution is the 288 bytes it is without
// evidence. Keys and digests never overlap, in one chunk or across two.
func TestTrackerEvidenceLookupArena(t *testing.T) {
	if n := unsafe.Sizeof(Execution{}); n != 288 {
		t.Errorf("Execution is %d bytes, want 288", n)
	}
	if DefaultMaxEvidenceColumns > arenaMaxKeys {
		t.Errorf("a lookup's row of %d columns would not fit the arena's %d", DefaultMaxEvidenceColumns, arenaMaxKeys)
	}
	for _, nc := range []int{1, 5, DefaultMaxEvidenceColumns} {
		for _, np := range []int{0, 1, 3, 8, arenaMaxKeys, arenaMaxKeys + 1} {
			t.Run(fmt.Sprint(np, " parameters, ", nc, " columns"), func(t *testing.T) {
				lookupArena(t, np, nc)
			})
		}
	}
}

// lookupArena runs Binds of np parameters whose Executions return one row
// of nc columns, and checks their keys, their results and the allocations
// of one.
func lookupArena(t *testing.T, np, nc int) {
	sql := "select * from t where true"
	for i := range np {
		sql += fmt.Sprintf(" and c%d = $%d", i, i+1)
	}
	fields := []pgproto3.FieldDescription{field("id", valuekey.OIDInt8, 0)}
	names := []string{"id"}
	for c := 1; c < nc; c++ {
		name := fmt.Sprint("ref", c)
		fields, names = append(fields, field(name, oidText, 0)), append(names, name)
	}
	desc := rowDescOf(fields...)
	// lookup i: parameters 1000*i+j, values "7" + i and "x" + c + "-" + i.
	lookup := func(i int) (front, back trStep, want []valuekey.Key, cols [][]valuekey.Key) {
		var params [][]byte
		for j := range np {
			v := fmt.Sprint(1000*i + j)
			params, want = append(params, s(v)), append(want, tk(v))
		}
		vals := [][]byte{s(fmt.Sprint(7, i))}
		cols = [][]valuekey.Key{{tk(fmt.Sprint(7, i))}}
		for c := 1; c < nc; c++ {
			v := fmt.Sprint("x", c, "-", i)
			vals, cols = append(vals, s(v)), append(cols, []valuekey.Key{tk(v)})
		}
		return fe(parse("", sql), bindF("", "", nil, nil, params...), describe('P', ""), execute("", 0), sync_),
			be(parseComplete, bindComplete, desc, row(vals...), cc("SELECT 1"), rfq('I')), want, cols
	}
	// Enough lookups to go through several chunks of both kinds.
	const n = 3*arenaKeys + 1
	var script []trStep
	for i := range n {
		f, b, _, _ := lookup(i)
		script = append(script, f, b)
	}
	r := evRun(t, script, evOpts)
	if len(r.got) != n {
		t.Fatalf("got %d executions, want %d", len(r.got), n)
	}
	for i, e := range r.got {
		_, _, want, cols := lookup(i)
		if !slices.Equal(e.ParamKeys, want) {
			t.Fatalf("execution %d: ParamKeys %v, want %v", i, e.ParamKeys, want)
		}
		if cap(e.ParamKeys) != len(e.ParamKeys) {
			t.Errorf("execution %d: ParamKeys of cap %d: an append would write the arena", i, cap(e.ParamKeys))
		}
		wantResult(t, fmt.Sprint("execution ", i), e.Result, names, false, cols...)
	}
	enc := func(msgs ...pgproto3.Message) []byte { return trStep{msgs: msgs}.bytes(t) }
	tr := NewTracker(&ConnInfo{ID: 1}, func(*Execution) {}, evOpts)
	f, b, _, _ := lookup(1)
	feb, beb := enc(f.msgs...), enc(b.msgs...)
	allocs := testing.AllocsPerRun(100, func() {
		if err := tr.Frontend(feb, trBase); err != nil {
			t.Fatal(err)
		}
		if err := tr.Backend(beb, trBase); err != nil {
			t.Fatal(err)
		}
	})
	wantAllocs := 1.0 // the Execution; the arena's chunks, one in 8 or more, round down
	if np > arenaMaxKeys {
		wantAllocs++ // the keys
	}
	if allocs != wantAllocs {
		t.Errorf("%v allocations per lookup, want %v", allocs, wantAllocs)
	}
}

// DataRows that do not match their RowDescription, or whose body does not
// hold together (the server never sends those, a broken peer might): each
// value read whole is a key, the rest is None, whether the row comes whole
// in one chunk (read at once) or in pieces (read step by step).
func TestTrackerEvidenceOddRows(t *testing.T) {
	// rawRow is a DataRow of count columns and then body as it is.
	rawRow := func(count uint16, body ...[]byte) []byte {
		b := binary.BigEndian.AppendUint16(nil, count)
		for _, p := range body {
			b = append(b, p...)
		}
		return append(binary.BigEndian.AppendUint32([]byte{'D'}, uint32(4+len(b))), b...)
	}
	cut := append(i4(3), s("7")...)
	malformed := append(append(i4(1), s("8")...), i4(-2)...)
	tail := []byte{0, 0}
	script := []trStep{
		fe(query("select a, b, c from t")),
		{backend: true, msgs: []pgproto3.Message{
			rowDescOf(field("a", valuekey.OIDInt4, 0), field("b", oidText, 0), field("c", oidText, 0)),
			row(s("1"), nil, longVal),          // NULL, too long
			row(s("2")),                        // fewer values than columns
			row(s("3"), s(""), s("x"), s("4")), // an empty value; more values than columns
			row(),                              // none
		}, raw: slices.Concat(
			rawRow(2, cut),                          // a value longer than what is left of the row
			rawRow(2, i4(10), i4(1), s("6")),        // the same, what is left looking like a value
			rawRow(3, malformed),                    // a length below -1 ends the row
			rawRow(2, i4(1), s("9"), tail),          // a length cut short
			rawRow(1, i4(1), s("5"), i4(1), s("6")), // bytes past the count
		)},
		be(cc("SELECT 9"), rfq('I')),
	}
	r := evRun(t, script, evOpts)
	if len(r.got) != 1 {
		t.Fatalf("got %d executions", len(r.got))
	}
	n := valuekey.None
	wantResult(t, "odd rows", r.got[0].Result, []string{"a", "b", "c"}, false,
		[]valuekey.Key{tk("1"), tk("2"), tk("3"), n, n, n, tk("8"), tk("9"), tk("5")},
		[]valuekey.Key{n, n, n, n, n, n, n, n, n},
		[]valuekey.Key{n, n, tk("x"), n, n, n, n, n, n})
}

// A named statement's columns never change while it lives, so the answer to
// a Describe of each of its portals (libpq's before every Execute) is not
// read once they are known: the portal's results take the statement's
// columns with its Bind's formats. After a Close and a Parse of the same name
// and text, they are read again: the schema may have changed in between.
func TestTrackerEvidenceNamedStatementColumns(t *testing.T) {
	const sql = "select * from t where owner = $1"
	id8 := rowDescOf(field("id", valuekey.OIDInt8, 0))
	id8bin := rowDescOf(field("id", valuekey.OIDInt8, 1))
	lookup := func(rfmt []int16, d *pgproto3.RowDescription, val []byte) []trStep {
		return []trStep{
			fe(bindF("", "s1", nil, rfmt, s("5")), describe('P', ""), execute("", 0), sync_),
			be(bindComplete, d, row(val), cc("SELECT 1"), rfq('I')),
		}
	}
	script := slices.Concat(
		[]trStep{fe(parse("s1", sql), sync_), be(parseComplete, rfq('I'))},
		lookup(nil, id8, s("10")),          // read: the statement's columns
		lookup(nil, id8, s("10")),          // known
		lookup([]int16{1}, id8bin, i8(10)), // known, the Bind's format binary
		lookup([]int16{0}, id8, s("11")),   // and text again
		[]trStep{
			fe(closeMsg('S', "s1"), parse("s1", sql), sync_),
			be(closeComplete, parseComplete, rfq('I')),
		},
		lookup(nil, rowDescOf(field("name", oidText, 0)), s("ann")), // the table changed
		lookup(nil, rowDescOf(field("name", oidText, 0)), s("bob")),
	)
	r := evRun(t, script, evOpts)
	if len(r.got) != 6 {
		t.Fatalf("got %d executions", len(r.got))
	}
	want := []struct {
		col string
		key valuekey.Key
	}{{"id", tk("10")}, {"id", tk("10")}, {"id", tk("10")}, {"id", tk("11")}, {"name", tk("ann")}, {"name", tk("bob")}}
	for i, w := range want {
		wantResult(t, fmt.Sprint("execution ", i), r.got[i].Result, []string{w.col}, false, []valuekey.Key{w.key})
	}
	// The known answers were not read: one description for the statement.
	if a, b := r.got[0].Result, r.got[3].Result; &a.Columns[0] != &b.Columns[0] {
		t.Errorf("the statement's description was not shared by its portals")
	}
}

// A named portal keeps the answer to its Describe (held in a copy while it
// is read): a portal of a statement the tracker no longer knows has no
// other columns, and each of its Executes hashes its rows by them.
func TestTrackerEvidenceNamedPortalDescribed(t *testing.T) {
	opts := evOpts
	opts.MaxStatements = 1
	desc := rowDescOf(field("id", valuekey.OIDInt8, 0))
	script := []trStep{
		fe(parse("s1", "select id from t where owner = $1"), parse("s2", "select 2"), sync_),
		be(parseComplete, parseComplete, rfq('I')),
		// s1 is forgotten (one statement kept): the portal's columns are
		// its Describe's alone.
		fe(query("BEGIN")), be(cc("BEGIN"), rfq('T')),
		fe(bindF("c1", "s1", nil, nil, s("5")), describe('P', "c1"), execute("c1", 1), sync_),
		be(bindComplete, desc, row(s("10")), suspended, rfq('T')),
		fe(execute("c1", 1), sync_),
		be(row(s("11")), suspended, rfq('T')),
	}
	r := evRun(t, script, opts)
	var got []*Execution
	for _, e := range r.got {
		if e.Prepared == "s1" {
			got = append(got, e)
		}
	}
	if len(got) != 2 {
		t.Fatalf("got %d executions of s1, want 2: %+v", len(got), r.got)
	}
	for i, v := range []string{"10", "11"} {
		wantResult(t, fmt.Sprint("execute ", i), got[i].Result, []string{"id"}, false, []valuekey.Key{tk(v)})
		if !slices.Equal(got[i].ParamKeys, []valuekey.Key{tk("5")}) {
			t.Errorf("execute %d: ParamKeys %v", i, got[i].ParamKeys)
		}
	}
}

// A tracker takes the budget 4 KiB at a time and attaches evidence from
// that credit: the budget counts the credit while the tracker lives and
// gets it back at Close, or as soon as the connection fails; taking credit
// ahead is never counted as a refusal.
func TestTrackerEvidenceCredit(t *testing.T) {
	lookups := func(n int) []trStep {
		var script []trStep
		for i := range n {
			script = append(script,
				fe(bindF("", "s", nil, nil, s(fmt.Sprint(i))), execute("", 0), sync_),
				be(bindComplete, row(s(fmt.Sprint(i))), cc("SELECT 1"), rfq('I')))
		}
		return script
	}
	setup := []trStep{
		fe(parse("s", "select a from t where id = $1"), describe('S', "s"), sync_),
		be(parseComplete, &pgproto3.ParameterDescription{ParameterOIDs: []uint32{oidText}}, rowDescOf(field("a", oidText, 0)), rfq('I')),
	}
	for _, tc := range []struct {
		name string
		end  func(r *trRun)
	}{
		{"close", func(r *trRun) { r.tr.Close() }},
		{"protocol error", func(r *trRun) {
			if err := r.tr.Frontend([]byte{'X', 0, 0, 0, 1}, trAt(0)); err == nil {
				t.Fatal("a message of length 1 was accepted")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewEvidenceBudget(1 << 20)
			r := runScript(t, append(setup, lookups(100)...), TrackerOptions{Evidence: true, EvidenceBudget: b}, whole)
			if r.err != nil || len(r.got) != 100 {
				t.Fatalf("got %d executions, %v", len(r.got), r.err)
			}
			size := 0
			for _, e := range r.got {
				if e.Result == nil || e.ParamKeys == nil {
					t.Fatalf("no evidence on %+v", e)
				}
				size += e.EvidenceSize()
			}
			if credit := b.Used() - int64(size); credit < 0 || credit >= evidenceCredit {
				t.Errorf("budget used %d for %d attached: credit %d, want [0, %d)", b.Used(), size, credit, evidenceCredit)
			}
			tc.end(r)
			if b.Used() != int64(size) || b.Refused() != 0 {
				t.Errorf("after the end: budget used %d, refused %d; want %d, 0", b.Used(), b.Refused(), size)
			}
		})
	}

	// A budget with less than the credit left: each execution takes its
	// own size from it, and the refusals are the executions'.
	first := resultSize(1, 1) + 8
	b := NewEvidenceBudget(int64(evidenceCredit + 2*first))
	if !b.Take(evidenceCredit) {
		t.Fatal("the budget refused its own size")
	}
	r := runScript(t, append(setup, lookups(3)...), TrackerOptions{Evidence: true, EvidenceBudget: b}, whole)
	r.tr.Close()
	if r.got[0].Result == nil || r.got[1].Result == nil || r.got[2].Result != nil || b.Refused() != 1 ||
		b.Used() != int64(evidenceCredit+2*first) {
		t.Errorf("near the bound: results %v %v %v, used %d, refused %d", r.got[0].Result != nil, r.got[1].Result != nil,
			r.got[2].Result != nil, b.Used(), b.Refused())
	}
}

// A Parse whose reply never came (the tracker lost step and dropped its
// queue) gives its types to no later Bind.
func TestTrackerEvidenceParseLostInDesync(t *testing.T) {
	f := i8(0x4020000000000000) // 8.0 as a float8
	script := []trStep{
		fe(parseT("", "select $1", oidFloat8), sync_),
		be(cc("SELECT 1"), rfq('I')), // not the Parse's reply: desync
		fe(bindF("", "", []int16{1}, nil, f), execute("", 0), sync_),
		be(bindComplete, cc("SELECT 0"), rfq('I')),
	}
	r := evRun(t, script, evOpts)
	if d := r.tr.Stats().Desyncs; d != 1 {
		t.Fatalf("got %d desyncs, want 1", d)
	}
	if len(r.got) != 1 {
		t.Fatalf("got %d executions, want the Bind's", len(r.got))
	}
	if got, want := r.got[0].ParamKeys, []valuekey.Key{valuekey.Binary(f, 0)}; !slices.Equal(got, want) {
		t.Errorf("ParamKeys %v, want %v (types unknown)", got, want)
	}
}

// checkResultShape checks r's columns: one name per column hashed, each
// column its rows long and no longer (a reader that appends to one cannot
// write over the next).
func checkResultShape(t *testing.T, what string, r *ResultKeys) {
	t.Helper()
	if len(r.Columns) != r.Width() {
		t.Errorf("%s: %d names for %d columns", what, len(r.Columns), r.Width())
	}
	for c := range r.Width() {
		if k := r.Column(c); len(k) != cap(k) || len(k) != r.Rows() {
			t.Errorf("%s: column of %d keys, cap %d, %d rows", what, len(k), cap(k), r.Rows())
		}
	}
	if r.Column(r.Width()) != nil || r.Column(-1) != nil {
		t.Errorf("%s: a column past the %d hashed", what, r.Width())
	}
}
