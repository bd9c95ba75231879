package pgwire

import (
	"encoding/binary"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nplus1/nplus1/internal/valuekey"
)

var updateTrackerCorpus = flag.Bool("update-tracker-corpus", false,
	"rewrite testdata/fuzz/FuzzTracker from the tracker's test scripts")

// Fuzz input: a mode byte, then records.
//
//	mode even (raw):     [side<<7 | n] [n bytes]         a chunk of a stream
//	mode odd (messages): [side<<7 | t] [n] [n bytes]     a whole message of type
//	                                                     trFuzzTypes[side][t%len], or
//	                                                     t itself when t&0x7f >= 0x70
//
// Raw records reach framing corners; message records reach the state machine.
var trFuzzTypes = [2]string{"QPBEDCSHFdcfX", "123CDEGHIKNASTVWZcdnstv"}

type trFuzzRecord struct {
	backend bool
	data    []byte
}

func trFuzzDecode(in []byte) []trFuzzRecord {
	if len(in) == 0 {
		return nil
	}
	mode, in := in[0], in[1:]
	var out []trFuzzRecord
	for len(in) > 0 {
		h := in[0]
		backend := h&0x80 != 0
		in = in[1:]
		if mode%2 == 0 {
			n := min(int(h&0x7f), len(in))
			out = append(out, trFuzzRecord{backend, in[:n]})
			in = in[n:]
			continue
		}
		if len(in) == 0 {
			break
		}
		n := min(int(in[0]), len(in)-1)
		body := in[1 : 1+n]
		in = in[1+n:]
		typ := h & 0x7f
		if typ < 0x70 {
			types := trFuzzTypes[0]
			if backend {
				types = trFuzzTypes[1]
			}
			typ = types[int(typ)%len(types)]
		}
		msg := []byte{typ, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(msg[1:], uint32(4+len(body)))
		out = append(out, trFuzzRecord{backend, append(msg, body...)})
	}
	return out
}

// trFuzzEncodeScript turns a test script into a raw-mode fuzz input.
func trFuzzEncodeScript(t testing.TB, script []trStep) []byte {
	out := []byte{0}
	for _, s := range script {
		b := s.bytes(t)
		for len(b) > 0 {
			n := min(len(b), 0x7f)
			h := byte(n)
			if s.backend {
				h |= 0x80
			}
			out = append(out, h)
			out = append(out, b[:n]...)
			b = b[n:]
		}
	}
	return out
}

// trFuzzMessages builds a message-mode input.
func trFuzzMessages(recs ...trFuzzRecord) []byte {
	out := []byte{1}
	for _, r := range recs {
		typ := r.data[0]
		types := trFuzzTypes[0]
		if r.backend {
			types = trFuzzTypes[1]
		}
		h := byte(0x7f)
		for i := range len(types) {
			if types[i] == typ {
				h = byte(i)
			}
		}
		if r.backend {
			h |= 0x80
		}
		out = append(out, h, byte(len(r.data)-1))
		out = append(out, r.data[1:]...)
	}
	return out
}

func trSlug(name string) string {
	var b strings.Builder
	dash := false
	for _, c := range strings.ToLower(name) {
		if ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') {
			b.WriteRune(c)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimSuffix(b.String(), "-")
}

func trFuzzSeeds(t testing.TB) map[string][]byte {
	seeds := map[string][]byte{}
	for _, tc := range trCases {
		seeds["script-"+trSlug(tc.name)] = trFuzzEncodeScript(t, tc.script)
	}
	m := func(backend bool, typ byte, body string) trFuzzRecord {
		return trFuzzRecord{backend, append([]byte{typ}, body...)}
	}
	seeds["msg-pipeline-error"] = trFuzzMessages(
		m(false, 'P', "s\x00select $1\x00\x00\x00"),
		m(false, 'B', "\x00s\x00\x00\x00\x00\x02\x00\x00\x00\x01a\xff\xff\xff\xff\x00\x00"),
		m(false, 'E', "\x00\x00\x00\x00\x00"),
		m(false, 'B', "p\x00s\x00\x00\x01\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00"),
		m(false, 'E', "p\x00\x00\x00\x00\x01"),
		m(false, 'S', ""),
		m(true, '1', ""), m(true, '2', ""), m(true, 'C', "SELECT 1\x00"),
		m(true, '2', ""), m(true, 'D', "\x00\x00"), m(true, 's', ""),
		m(true, 'E', "SERROR\x00C22012\x00Mdivision\x00\x00"), m(true, 'Z', "I"),
	)
	seeds["msg-copy-both"] = trFuzzMessages(
		m(false, 'Q', "START_REPLICATION\x00"),
		m(true, 'W', "\x00\x00\x00"), m(true, 'd', "w"),
		m(false, 'd', "r"), m(false, 'S', ""), m(false, 'c', ""),
		m(true, 'c', ""), m(true, 'C', "START_REPLICATION\x00"), m(true, 'Z', "I"),
	)
	seeds["msg-app-name-tx"] = trFuzzMessages(
		m(false, 'Q', "begin; set application_name='x'\x00"),
		m(true, 'C', "BEGIN\x00"), m(true, 'C', "SET\x00"),
		m(true, 'S', "application_name\x00x\x00"), m(true, 'Z', "T"),
		m(false, 'Q', "commit\x00"), m(true, 'C', "COMMIT\x00"), m(true, 'Z', "I"),
	)
	// A negative parameter length other than -1: the server rejects the
	// Bind; the kept values, their hash and the keys must agree.
	seeds["msg-bind-bad-param-length"] = trFuzzMessages(
		m(false, 'P', "\x00select $1, $2\x00\x00\x00"),
		m(false, 'B', "\x00\x00\x00\x00\x00\x02\xff\xff\xff\xfe\x00\x00\x00\x01a\x00\x00"),
		m(false, 'E', "\x00\x00\x00\x00\x00"), m(false, 'S', ""),
		m(true, '1', ""), m(true, 'E', "SERROR\x00C08P01\x00Minsufficient data left in message\x00\x00"), m(true, 'Z', "I"),
	)
	// Value evidence: a statement described once, then Bind with binary
	// parameters and result formats, and Execute.
	seeds["msg-evidence-cached-statement"] = trFuzzMessages(
		m(false, 'P', "s\x00select id, v from t where id = $1\x00\x00\x01\x00\x00\x00\x14"),
		m(false, 'D', "Ss\x00"), m(false, 'S', ""),
		m(true, '1', ""), m(true, 't', "\x00\x01\x00\x00\x00\x14"),
		m(true, 'T', "\x00\x02id\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x14\x00\x08\xff\xff\xff\xff\x00\x00"+
			"v\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x19\xff\xff\xff\xff\xff\xff\x00\x00"),
		m(true, 'Z', "I"),
		m(false, 'B', "\x00s\x00\x00\x01\x00\x01\x00\x01\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x07\x00\x02\x00\x01\x00\x00"),
		m(false, 'E', "\x00\x00\x00\x00\x00"), m(false, 'S', ""),
		m(true, '2', ""),
		m(true, 'D', "\x00\x02\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x07\x00\x00\x00\x01x"),
		m(true, 'D', "\x00\x02\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x08\xff\xff\xff\xff"),
		m(true, 'C', "SELECT 2\x00"), m(true, 'Z', "I"),
	)
	seeds["raw-bad-length"] = []byte{0, 5, 'Q', 0, 0, 0, 3}
	seeds["raw-split-header"] = []byte{0, 2, 'Q', 0, 3, 0, 0, 6, 2, 'x', 0}
	return seeds
}

func FuzzTracker(f *testing.F) {
	for _, s := range trFuzzSeeds(f) {
		f.Add(s)
	}
	opts := TrackerOptions{MaxMessageBytes: 1 << 16, MaxSQLBytes: 16, MaxStatements: 3, MaxPending: 8,
		Evidence: true, MaxEvidenceRows: 3, MaxEvidenceColumns: 2}
	f.Fuzz(func(t *testing.T, in []byte) {
		var gotA, gotB, gotD []*Execution
		optsA := opts
		optsA.EvidenceBudget = NewEvidenceBudget(1 << 30)
		a := NewTracker(&ConnInfo{ID: 1}, func(e *Execution) { gotA = append(gotA, e) }, optsA)
		// b also keeps parameter values: that must change nothing else.
		optsB := opts
		optsB.KeepParams, optsB.MaxParamBytes = true, 32
		b := NewTracker(&ConnInfo{ID: 1}, func(e *Execution) { gotB = append(gotB, e) }, optsB)
		c := NewTracker(&ConnInfo{ID: 1}, nil, opts)
		// d hashes no values: that must change nothing else.
		optsD := opts
		optsD.Evidence = false
		d := NewTracker(&ConnInfo{ID: 1}, func(e *Execution) { gotD = append(gotD, e) }, optsD)
		feed := func(tr *Tracker, r trFuzzRecord, i int, bytewise bool) error {
			chunks := [][]byte{r.data}
			if bytewise {
				chunks = byteByByte(r.data)
			}
			for _, ch := range chunks {
				var err error
				if r.backend {
					err = tr.Backend(ch, trAt(i))
				} else {
					err = tr.Frontend(ch, trAt(i))
				}
				if err != nil {
					return err
				}
			}
			return nil
		}
		for i, r := range trFuzzDecode(in) {
			errA := feed(a, r, i, false)
			errB := feed(b, r, i, true)
			errC := feed(c, r, i, false)
			errD := feed(d, r, i, false)
			if (errA == nil) != (errB == nil) || (errA == nil) != (errC == nil) || (errA == nil) != (errD == nil) {
				t.Fatalf("record %d: whole %v, byte by byte %v, without emit %v, without evidence %v", i, errA, errB, errC, errD)
			}
			trCheckBounds(t, a, opts)
			if errA != nil {
				break
			}
		}
		a.Close()
		b.Close()
		d.Close()
		if d := diffEvs(evs(gotA), evs(gotB)); d != "" {
			t.Fatalf("chunking changed the executions:%s", d)
		}
		if a.Stats() != b.Stats() {
			t.Fatalf("chunking changed the stats: %+v, %+v", a.Stats(), b.Stats())
		}
		if d := diffEvidence(gotA, gotB); d != "" {
			t.Fatalf("chunking changed the evidence: %s", d)
		}
		if d := diffEvs(evs(gotA), evs(gotD)); d != "" {
			t.Fatalf("evidence changed the executions:%s", d)
		}
		size := 0
		for _, e := range gotA {
			size += e.EvidenceSize()
			trCheckEvidence(t, e, opts)
		}
		if used := optsA.EvidenceBudget.Used(); used != int64(size) {
			t.Fatalf("budget used %d, evidence attached %d", used, size)
		}
		for _, e := range gotD {
			if e.ParamKeys != nil || e.Result != nil {
				t.Fatalf("evidence without Evidence: %v %+v", e.ParamKeys, e.Result)
			}
		}
		for _, e := range gotA {
			if e.Conn == nil || len(e.SQL) > opts.MaxSQLBytes || e.End.Before(e.Start) {
				t.Fatalf("bad execution %+v", e)
			}
		}
		for _, e := range gotB {
			n := 0
			for _, v := range e.Params {
				n += len(v)
			}
			if n > optsB.MaxParamBytes || (e.Params != nil && HashParams(e.ParamFormats, e.Params) != e.ParamsHash) {
				t.Fatalf("kept params %q (formats %v): %d bytes, hash %x, tracker's %x", e.Params, e.ParamFormats, n, HashParams(e.ParamFormats, e.Params), e.ParamsHash)
			}
			if e.Params != nil && e.ParamKeys != nil {
				trCheckParamKeys(t, e)
			}
		}
		if b.portalParams < 0 || b.portalParams > b.sqlBudget {
			t.Fatalf("portal params out of bounds: %d", b.portalParams)
		}
	})
}

// trCheckEvidence asserts the shape and bounds of e's evidence.
func trCheckEvidence(t *testing.T, e *Execution, opts TrackerOptions) {
	t.Helper()
	if e.ParamKeys != nil && len(e.ParamKeys) != min(e.NumParams, maxParamKeys) {
		t.Fatalf("%d ParamKeys for %d parameters", len(e.ParamKeys), e.NumParams)
	}
	r := e.Result
	if e.ResultSize() != r.Size() || e.ResultRows() != r.Rows() {
		t.Fatalf("ResultSize %d, ResultRows %d; the result's %d, %d", e.ResultSize(), e.ResultRows(), r.Size(), r.Rows())
	}
	if r == nil {
		return
	}
	if len(r.Columns) != r.Width() || r.Width() == 0 || r.Width() > opts.MaxEvidenceColumns ||
		r.Rows() == 0 || r.Rows() > opts.MaxEvidenceRows {
		t.Fatalf("result of %d columns (%d names), %d rows", r.Width(), len(r.Columns), r.Rows())
	}
	for c := range r.Width() {
		if k := r.Column(c); len(k) != r.Rows() || cap(k) != len(k) {
			t.Fatalf("result column of %d keys (cap %d), %d rows", len(k), cap(k), r.Rows())
		}
	}
	// Result's rows are the DataRows read and e.Rows is the tag's count: the
	// fuzzer's server may send a tag that disagrees (a DataRow, then "SELECT
	// 0"), so they are not compared here; the scripted tests check both.
}

// trCheckParamKeys asserts that the keys are those of the kept values, as
// the server reads them: text, or binary read as an integer or UUID by
// width or as bytes by a named type.
func trCheckParamKeys(t *testing.T, e *Execution) {
	t.Helper()
	for i, k := range e.ParamKeys {
		v := e.Params[i]
		f := int16(0)
		switch len(e.ParamFormats) {
		case 0:
		case 1:
			f = e.ParamFormats[0]
		default:
			f = e.ParamFormats[i]
		}
		switch {
		case v == nil:
			if k != valuekey.None {
				t.Fatalf("parameter %d: NULL has key %v", i, k)
			}
		case f == 0:
			if k != valuekey.Text(v) {
				t.Fatalf("parameter %d %q (text): key %v, want %v", i, v, k, valuekey.Text(v))
			}
		default:
			if k != valuekey.Binary(v, 0) && k != valuekey.Binary(v, 25) {
				t.Fatalf("parameter %d %q (binary): key %v", i, v, k)
			}
		}
	}
}

// numStmts is the number of named statements remembered.
func (t *Tracker) numStmts() int {
	if t.stmts == nil {
		return 0
	}
	return t.stmts.Len()
}

// stmtBytes is the summed length of the named statements' text.
func (t *Tracker) stmtBytes() int {
	if t.stmts == nil {
		return 0
	}
	return t.stmts.Cost()
}

// trCheckBounds asserts the tracker's memory stays within its bounds.
func trCheckBounds(t *testing.T, tr *Tracker, opts TrackerOptions) {
	t.Helper()
	switch {
	case tr.q.n > opts.MaxPending:
		t.Fatalf("queue holds %d requests, MaxPending is %d", tr.q.n, opts.MaxPending)
	case tr.numStmts() > opts.MaxStatements || len(tr.portals) > opts.MaxStatements:
		t.Fatalf("%d statements, %d portals, MaxStatements is %d", tr.numStmts(), len(tr.portals), opts.MaxStatements)
	case len(tr.held) > maxHeld:
		t.Fatalf("%d executions held", len(tr.held))
	case cap(tr.sql.buf) > 64 || cap(tr.name.buf) > 128 || cap(tr.name2.buf) > 128:
		t.Fatalf("scratch buffers grew: %d, %d, %d", cap(tr.sql.buf), cap(tr.name.buf), cap(tr.name2.buf))
	case len(tr.feSmall) > frontendSmallCap || len(tr.beSmall) > backendSmallCap:
		t.Fatalf("small buffers grew: %d, %d", len(tr.feSmall), len(tr.beSmall))
	case tr.pendingSQL < 0 || tr.pendingSQL > tr.sqlBudget || tr.stmtBytes() < 0 || tr.stmtBytes() > tr.sqlBudget:
		t.Fatalf("SQL bytes out of bounds: pending %d, statements %d", tr.pendingSQL, tr.stmtBytes())
	case tr.untracked < 0:
		t.Fatalf("negative untracked count %d", tr.untracked)
	case len(tr.res.keys) > opts.MaxEvidenceRows*opts.MaxEvidenceColumns || len(tr.rd) > rdCap(opts.MaxEvidenceColumns):
		t.Fatalf("evidence buffers grew: %d keys, %d description bytes", len(tr.res.keys), len(tr.rd))
	case tr.portalParams < 0 || tr.portalParams > tr.sqlBudget:
		t.Fatalf("portal bytes out of bounds: %d", tr.portalParams)
	}
	for i := 0; i < tr.q.n; i++ {
		r := tr.q.at(i)
		if r.ev.on != (tr.evidence && r.kind == reqBind) || r.types != nil && !(tr.evidence && r.kind == reqParse) {
			t.Fatalf("queued %v request with evidence %v, types %p (evidence %v)", r.kind, r.ev.on, r.types, tr.evidence)
		}
	}
}

// TestTrackerFuzzCorpus keeps the committed seed corpus in step with the
// scripts: go test -run TrackerFuzzCorpus -update-tracker-corpus ./proxy/
func TestTrackerFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzTracker")
	seeds := trFuzzSeeds(t)
	if *updateTrackerCorpus {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range seeds {
			content := "go test fuzz v1\n[]byte(" + strconv.Quote(string(data)) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, data := range seeds {
		want := "go test fuzz v1\n[]byte(" + strconv.Quote(string(data)) + ")\n"
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != want {
			t.Errorf("seed %s is not committed as it is now (run with -update-tracker-corpus): %v", name, err)
		}
	}
}
