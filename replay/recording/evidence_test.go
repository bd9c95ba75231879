package recording

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nplus1/nplus1/internal/valuekey"
	"github.com/nplus1/nplus1/pgwire"
)

// evidenceRecording is evidenceExecutions as the Writer writes them.
func evidenceRecording() []byte {
	var buf bytes.Buffer
	w := NewWriter(&buf, WriterOptions{Now: func() time.Time { return t0 }})
	for _, e := range evidenceExecutions() {
		w.Write(e)
	}
	w.Close()
	return buf.Bytes()
}

// evidenceExecutions are sampleExecutions with value evidence as a tracker
// attaches it: digests of parameters (None among them), results of one and
// of several columns, one cut short, fewer digest lists than columns, and
// executions without any.
func evidenceExecutions() []*pgwire.Execution {
	es := sampleExecutions()
	k := valuekey.Text
	es[0].ParamKeys = []valuekey.Key{k([]byte("open")), k([]byte("20"))}
	es[0].Result = pgwire.NewResultKeys([]string{"id", "user_id"}, [][]valuekey.Key{
		{k([]byte("1")), k([]byte("2")), k([]byte("3"))},
		{k([]byte("7")), valuekey.None, k([]byte("7"))},
	}, false)
	es[1].ParamKeys = []valuekey.Key{k([]byte("open")), valuekey.Binary([]byte{0, 0, 0, 0, 0, 0, 0, 7}, valuekey.OIDInt8), valuekey.None, valuekey.None, k([]byte("caf\xe9")), k([]byte("x"))}
	es[1].Result = pgwire.NewResultKeys([]string{"text", "int8", "text", "text", "bytea", "text"},
		[][]valuekey.Key{{k([]byte("open"))}, {k([]byte("7"))}}, true)
	// es[2] (BEGIN) has none; es[3] a result without parameters.
	es[3].Result = pgwire.NewResultKeys([]string{"?column?"}, [][]valuekey.Key{{k([]byte("1"))}}, false)
	// es[6]: parameters without a result (its values were not kept).
	es[6].ParamKeys = []valuekey.Key{valuekey.None}
	return es
}

func writeAll(t testing.TB, es []*pgwire.Execution) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf, WriterOptions{Now: func() time.Time { return t0 }})
	for _, e := range es {
		if err := w.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readAll(t testing.TB, data []byte, opts ReaderOptions) ([]*pgwire.Execution, *Reader) {
	t.Helper()
	r := NewReader(bytes.NewReader(data), opts)
	var out []*pgwire.Execution
	for {
		e, err := r.Next()
		if err == io.EOF {
			return out, r
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
}

// sealed returns e with its digests as a Writer writes them (valuekey.Seal).
func sealed(e *pgwire.Execution) *pgwire.Execution {
	c := *e
	c.ParamKeys = slices.Clone(e.ParamKeys) // nil stays nil
	for i, k := range c.ParamKeys {
		c.ParamKeys[i] = valuekey.Seal(k)
	}
	if r := e.Result; r != nil {
		cols := make([][]valuekey.Key, r.Width())
		for i := range cols {
			for _, k := range r.Column(i) {
				cols[i] = append(cols[i], valuekey.Seal(k))
			}
		}
		c.Result = pgwire.NewResultKeys(r.Columns, cols, r.Truncated)
	}
	return &c
}

func TestEvidenceRoundTrip(t *testing.T) {
	in := evidenceExecutions()
	data := writeAll(t, in)
	want := make([]*pgwire.Execution, len(in))
	for i, e := range in {
		want[i] = sealed(e)
	}

	budget := pgwire.NewEvidenceBudget(1 << 20)
	got, r := readAll(t, data, ReaderOptions{Evidence: true, EvidenceBudget: budget})
	if len(got) != len(want) || r.Stats().Skipped != 0 {
		t.Fatalf("%d executions, stats %+v (%s)", len(got), r.Stats(), r.FirstProblem())
	}
	size, with := 0, 0
	for i := range want {
		if !slices.Equal(got[i].ParamKeys, want[i].ParamKeys) {
			t.Errorf("#%d param keys: got %v, want %v", i, got[i].ParamKeys, want[i].ParamKeys)
		}
		if !reflect.DeepEqual(got[i].Result, want[i].Result) {
			t.Errorf("#%d result: got %+v, want %+v", i, got[i].Result, want[i].Result)
		}
		if got[i].EvidenceSize() != want[i].EvidenceSize() {
			t.Errorf("#%d evidence size %d, want %d", i, got[i].EvidenceSize(), want[i].EvidenceSize())
		}
		size += got[i].EvidenceSize()
		if want[i].ParamKeys != nil || want[i].Result != nil {
			with++
		}
		// The rest of the execution reads as without evidence.
		g, w := *got[i], *want[i]
		g.ParamKeys, g.Result, w.ParamKeys, w.Result = nil, nil, nil, nil
		g.Conn, w.Conn = nil, nil
		w.Params, w.ParamFormats = nil, nil
		if !reflect.DeepEqual(g, w) {
			t.Errorf("#%d:\n got  %+v\n want %+v", i, g, w)
		}
	}
	// What the reader took from the budget is what the consumer gives back.
	if st := r.Stats(); budget.Used() != int64(size) || st.Evidence != int64(with) || st.EvidenceDropped != 0 {
		t.Errorf("budget used %d, want %d; stats %+v", budget.Used(), size, st)
	}
	if n := r.Notes(); n != nil {
		t.Errorf("notes %q", n)
	}

	// --evidence=false: the digests are skipped.
	got, r = readAll(t, data, ReaderOptions{})
	for i, e := range got {
		if e.ParamKeys != nil || e.Result != nil {
			t.Errorf("#%d: evidence without ReaderOptions.Evidence", i)
		}
	}
	if st := r.Stats(); st.Executions != int64(len(want)) || st.Skipped != 0 || st.Evidence != 0 || r.Notes() != nil {
		t.Errorf("without evidence: stats %+v, notes %q", st, r.Notes())
	}
}

// The format, pinned: base64 (standard, padded) of the sealed digests as
// little-endian uint64s; None is eight zero bytes.
func TestEvidenceFormat(t *testing.T) {
	c := &pgwire.ConnInfo{ID: 1, User: "u", Database: "d"}
	e := &pgwire.Execution{Conn: c, Start: t0, End: t0, SQL: "SELECT $1", Protocol: "extended", Rows: 1, Command: "SELECT",
		ParamKeys: []valuekey.Key{0x0807060504030201, valuekey.None},
		Result:    pgwire.NewResultKeys([]string{"a", "b\"c"}, [][]valuekey.Key{{1}, {valuekey.None}}, true)}
	data := writeAll(t, []*pgwire.Execution{e})
	line := string(data)
	b64 := func(keys ...valuekey.Key) string {
		var raw []byte
		for _, k := range keys {
			raw = binary.LittleEndian.AppendUint64(raw, uint64(valuekey.Seal(k)))
		}
		return base64.StdEncoding.EncodeToString(raw)
	}
	params, first := b64(0x0807060504030201, valuekey.None), b64(1)
	for _, want := range []string{
		`,"param_keys":"` + params + `"`,
		`,"result_columns":["a","b\"c"],"result_keys":["` + first + `","AAAAAAAAAAA="],"result_truncated":true}}`,
	} {
		if !strings.Contains(line, want) {
			t.Errorf("line lacks %s:\n%s", want, line)
		}
	}
	for l := range strings.Lines(line) {
		var env struct {
			Item map[string]any `json:"item"`
		}
		if err := json.Unmarshal([]byte(l), &env); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, l)
		}
	}
	// Without padding, as other writers may produce it, it reads the same;
	// and so does a list shorter than the first (not what a Writer writes):
	// filled with None.
	raw := strings.Replace(line, `"`+params+`"`, `"`+strings.TrimRight(params, "=")+`"`, 1)
	raw = strings.Replace(raw, `"`+first+`"`, `"`+strings.TrimRight(first, "=")+`"`, 1)
	if raw == line {
		t.Fatal("no padding to drop")
	}
	short := strings.Replace(line, `"AAAAAAAAAAA="]`, `""]`, 1)
	if short == line {
		t.Fatal("no second list to shorten")
	}
	want := sealed(e)
	for _, in := range []string{line, raw, short} {
		got, r := readAll(t, []byte(in), ReaderOptions{Evidence: true})
		if len(got) != 1 || r.Stats().Skipped != 0 {
			t.Fatalf("%d executions (%s)", len(got), r.FirstProblem())
		}
		if !slices.Equal(got[0].ParamKeys, want.ParamKeys) || !reflect.DeepEqual(got[0].Result, want.Result) {
			t.Errorf("got %v %+v, want %v %+v", got[0].ParamKeys, got[0].Result, want.ParamKeys, want.Result)
		}
	}
}

// A digest leaves the process only sealed: none written is one the
// process computed, and equal digests still read equal, distinct ones
// distinct, None as None.
func TestEvidenceSealed(t *testing.T) {
	c := &pgwire.ConnInfo{ID: 1, User: "u", Database: "d"}
	seven, eight := valuekey.Text([]byte("7")), valuekey.Int(8)
	e := &pgwire.Execution{Conn: c, Start: t0, End: t0, SQL: "SELECT $1", Protocol: "extended", Rows: 1, Command: "SELECT",
		ParamKeys: []valuekey.Key{seven, valuekey.None, eight},
		Result:    pgwire.NewResultKeys([]string{"a"}, [][]valuekey.Key{{valuekey.Int(7)}}, false)}
	data := writeAll(t, []*pgwire.Execution{e})
	for _, k := range []valuekey.Key{seven, eight} {
		le := base64.StdEncoding.EncodeToString(binary.LittleEndian.AppendUint64(nil, uint64(k)))
		if bytes.Contains(data, []byte(le[:10])) {
			t.Errorf("the recording holds a digest as the process computed it:\n%s", data)
		}
	}
	got, r := readAll(t, data, ReaderOptions{Evidence: true})
	if len(got) != 1 || got[0].Result == nil || len(got[0].ParamKeys) != 3 {
		t.Fatalf("%d executions (%s)", len(got), r.FirstProblem())
	}
	p, col := got[0].ParamKeys, got[0].Result.Column(0)
	switch {
	case p[0] == seven || p[2] == eight:
		t.Errorf("param keys %v not sealed", p)
	case p[0] != col[0]:
		t.Errorf("7 as text (%v) and 7 as an integer (%v) no longer match", p[0], col[0])
	case p[0] == p[2]:
		t.Error("7 and 8 match")
	case p[1] != valuekey.None:
		t.Errorf("None sealed to %v", p[1])
	}
}

// Recordings made before the evidence, or with --evidence=false, read as
// before: no evidence, and a note that says so.
func TestEvidenceAbsent(t *testing.T) {
	got, r := readAll(t, writeAll(t, sampleExecutions()), ReaderOptions{Evidence: true, EvidenceBudget: pgwire.NewEvidenceBudget(1 << 20)})
	if len(got) != len(sampleExecutions()) || r.Stats().Skipped != 0 {
		t.Fatalf("%d executions, stats %+v", len(got), r.Stats())
	}
	for i, e := range got {
		if e.ParamKeys != nil || e.Result != nil {
			t.Errorf("#%d has evidence", i)
		}
	}
	if n := r.Notes(); len(n) != 1 || !strings.Contains(n[0], "holds no value evidence") {
		t.Errorf("notes %q", n)
	}
	// pgreplay-go's lines, and nothing that could have evidence: no note.
	in := `{"type":"Statement","item":{"timestamp":"2019-02-25T15:08:27.239Z","session_id":"a","user":"u","database":"d","query":"BEGIN"}}` + "\n"
	if _, r := readAll(t, []byte(in), ReaderOptions{Evidence: true}); r.Notes() != nil {
		t.Errorf("notes %q", r.Notes())
	}
}

// A budget that refuses: the executions come without evidence, counted,
// and cost the budget nothing.
func TestEvidenceBudgetRefuses(t *testing.T) {
	es := evidenceExecutions()
	data := writeAll(t, es)
	first := es[0].EvidenceSize()
	budget := pgwire.NewEvidenceBudget(int64(first)) // room for the first only
	got, r := readAll(t, data, ReaderOptions{Evidence: true, EvidenceBudget: budget})
	if got[0].Result == nil || got[1].Result != nil || got[1].ParamKeys != nil || got[3].Result != nil {
		t.Errorf("evidence attached beyond the budget")
	}
	st := r.Stats()
	if budget.Used() != int64(first) || st.Evidence != 1 || st.EvidenceDropped != 3 || budget.Refused() != 3 {
		t.Errorf("used %d (want %d), refused %d, stats %+v", budget.Used(), first, budget.Refused(), st)
	}
	if n := r.Notes(); len(n) != 1 || !strings.Contains(n[0], "of 3 executions was not restored") {
		t.Errorf("notes %q", n)
	}
}

// Digests that are not what a Writer writes make the line unreadable
// (skipped and counted, like a bad timestamp); the next lines read.
func TestEvidenceBad(t *testing.T) {
	good := `{"type":"BoundExecute","item":{"timestamp":"2019-02-25T15:08:27Z","session_id":"a","user":"u","database":"d","query":"SELECT $1","parameters":["1"],"rows":1%s}}` + "\n"
	for _, bad := range []string{
		`,"param_keys":"AQID"`,          // 3 bytes
		`,"param_keys":"!!!!!!!!!!!!"`,  // not base64
		`,"param_keys":"AQAAAAAAAAA=="`, // bad padding
		`,"param_keys":[1,2]`,           // not a string
		`,"result_columns":["a"],"result_keys":["AQAAAAAAAAA=","AQAAAAAAAAA="]`, // more lists than columns
		`,"result_columns":"a","result_keys":[]`,
		`,"result_columns":["a"],"result_keys":[1]`,
		`,"result_truncated":"yes"`,
	} {
		in := fmt.Sprintf(good, bad) + fmt.Sprintf(good, `,"param_keys":"AQAAAAAAAAA="`)
		got, r := readAll(t, []byte(in), ReaderOptions{Evidence: true})
		if len(got) != 1 || r.Stats().Skipped != 1 || !slices.Equal(got[0].ParamKeys, []valuekey.Key{1}) {
			t.Errorf("%s: %d executions, stats %+v", bad, len(got), r.Stats())
		}
	}
	// null lists and an empty result read as no keys.
	in := fmt.Sprintf(good, `,"param_keys":null,"result_columns":null,"result_keys":null`)
	got, r := readAll(t, []byte(in), ReaderOptions{Evidence: true})
	if len(got) != 1 || r.Stats().Skipped != 0 || got[0].ParamKeys != nil || got[0].Result == nil || got[0].Result.Rows() != 0 {
		t.Errorf("nulls: %d executions, stats %+v (%s)", len(got), r.Stats(), r.FirstProblem())
	}
}

// Consecutive results with the same columns share one Columns slice.
func TestEvidenceColumnsShared(t *testing.T) {
	es := evidenceExecutions()
	loop := []*pgwire.Execution{es[0], es[0], es[3], es[0]}
	got, _ := readAll(t, writeAll(t, loop), ReaderOptions{Evidence: true})
	if &got[0].Result.Columns[0] != &got[1].Result.Columns[0] {
		t.Errorf("a loop's results do not share their columns")
	}
	if !slices.Equal(got[3].Result.Columns, es[0].Result.Columns) || !slices.Equal(got[2].Result.Columns, es[3].Result.Columns) {
		t.Errorf("columns %v %v", got[2].Result.Columns, got[3].Result.Columns)
	}
}

// BenchmarkReadEvidence reads 500 loops: a list of 10 rows, then 10
// lookups by id with one parameter and a one-row result, with and without
// restoring the evidence (bench/replay.sh's workload, as the proxy records
// it).
func BenchmarkReadEvidence(b *testing.B) {
	c := &pgwire.ConnInfo{ID: 1, ClientAddr: "127.0.0.1", User: "shop", Database: "shop", ApplicationName: "bench"}
	ids := make([]valuekey.Key, 10)
	for i := range ids {
		ids[i] = valuekey.Text(fmt.Appendf(nil, "%d", i+1))
	}
	es := []*pgwire.Execution{{Conn: c, Start: t0, End: t0, SQL: "SELECT id FROM orders LIMIT 10", Protocol: "simple", Command: "SELECT", Rows: 10,
		Result: pgwire.NewResultKeys([]string{"id"}, [][]valuekey.Key{ids}, false)}}
	for i := range 10 {
		p := [][]byte{fmt.Appendf(nil, "%d", i+1)}
		es = append(es, &pgwire.Execution{Conn: c, Start: t0, End: t0, SQL: "SELECT name FROM users WHERE id = $1", Protocol: "extended",
			Params: p, ParamsHash: pgwire.HashParams(nil, p), NumParams: 1, Command: "SELECT", Rows: 1, ParamKeys: ids[i : i+1],
			Result: pgwire.NewResultKeys([]string{"name"}, [][]valuekey.Key{{valuekey.Text([]byte("user name"))}}, false)})
	}
	var loop []*pgwire.Execution
	for range 500 {
		loop = append(loop, es...)
	}
	es = loop
	data := writeAll(b, es)
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("evidence=%v", on), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				r := NewReader(bytes.NewReader(data), ReaderOptions{Evidence: on})
				for {
					if _, err := r.Next(); err != nil {
						break
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(es)), "ns/execution")
		})
	}
}
