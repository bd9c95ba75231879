package pcap

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nplus1/nplus1/pgwire"
)

func readAll(t testing.TB, paths []string, opts Options) ([]*pgwire.Execution, *Reader) {
	t.Helper()
	r, err := Open(paths, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
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

// dump is a stable text form of executions and stats, for golden files.
func dump(execs []*pgwire.Execution, r *Reader) string {
	var b strings.Builder
	for _, e := range execs {
		c := e.Conn
		fmt.Fprintf(&b, "conn=%d addr=%s user=%q db=%q app=%q %s %q idx=%d cmd=%q rows=%d state=%q params=%d hash=%016x start=%s dur=%s tx=%v txend=%v\n",
			c.ID, c.ClientAddr, c.User, c.Database, c.ApplicationName, e.Protocol, e.SQL, e.StatementIndex, e.Command, e.Rows, e.SQLState,
			e.NumParams, e.ParamsHash, e.Start.UTC().Format("15:04:05.000000"), e.Duration(), e.InTransaction, e.TxEnd)
	}
	st := r.Stats()
	fmt.Fprintf(&b, "stats: %+v\n", st)
	for _, n := range r.Notes() {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	return b.String()
}

func TestFixtures(t *testing.T) {
	for _, f := range fixtures() {
		t.Run(f.name, func(t *testing.T) {
			execs, r := readAll(t, []string{fixturePath(f)}, Options{})
			got := dump(execs, r)
			golden := filepath.Join("testdata", f.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("got:\n%s\nwant (%s):\n%s", got, golden, want)
			}
			st := r.Stats()
			switch f.name {
			case "basic", "ipv6", "cooked", "cooked2":
				// The source query and six lookups, with the startup's identity.
				if len(execs) != 7 || st.SkippedBytes != 0 || st.LostBytes != 0 || st.Desyncs != 0 {
					t.Fatalf("got %d executions, stats %+v; want 7 and nothing skipped", len(execs), st)
				}
				if c := execs[0].Conn; c.User != "shop" || c.Database != "shopdb" || c.ApplicationName != "shop-api" {
					t.Errorf("conn %+v", *c)
				}
				hashes := map[uint64]bool{}
				for _, e := range execs[1:] {
					if e.SQL != "SELECT name, email FROM users WHERE id = $1" || e.Rows != 1 || e.Protocol != "extended" {
						t.Errorf("lookup %+v", e)
					}
					hashes[e.ParamsHash] = true
				}
				if len(hashes) != 6 || execs[0].Rows != 6 {
					t.Errorf("want 6 distinct parameter sets and 6 source rows, got %d and %d", len(hashes), execs[0].Rows)
				}
			case "midstream":
				// The source query's end is skipped; the six lookups are
				// followed, on a connection known only by its address.
				if st.Midstream != 1 || st.SkippedBytes == 0 || len(execs) != 6 {
					t.Fatalf("got %d executions, stats %+v; want 6 and some bytes skipped", len(execs), st)
				}
				if c := execs[0].Conn; c.User != "" || c.ClientAddr != "127.0.0.1" {
					t.Errorf("conn %+v", *c)
				}
			case "reordered":
				if len(execs) != 2 || !strings.HasPrefix(execs[0].SQL, "SELECT id, name, price_cents FROM products") || execs[0].Rows != 3 || st.Desyncs != 0 {
					t.Fatalf("got %d executions (%v), stats %+v", len(execs), execs, st)
				}
			case "tls":
				if st.TLS != 3 || len(execs) != 0 {
					t.Fatalf("got %d executions, stats %+v; want none and 3 TLS connections", len(execs), st)
				}
				if !strings.Contains(strings.Join(r.Notes(), "\n"), "3 TLS-encrypted connections skipped") {
					t.Errorf("notes %q", r.Notes())
				}
			}
		})
	}
}

// Every way of cutting a capture's packets into segments gives the same
// executions: the reassembly and the tracker do not depend on chunking.
func TestSplitFilesAreOneCapture(t *testing.T) {
	f := fixtures()[0]
	pkts := f.pkts(t)
	dir := t.TempDir()
	var paths []string
	for i, part := range [][]framed{pkts[:7], pkts[7:20], pkts[20:]} {
		p := filepath.Join(dir, fmt.Sprintf("part%d.pcap", i))
		writeCapture(t, p, i == 1, f.link, part)
		paths = append(paths, p)
	}
	whole, r1 := readAll(t, []string{fixturePath(f)}, Options{})
	split, r2 := readAll(t, paths, Options{})
	if a, b := dump(whole, r1), dump(split, r2); strings.SplitN(a, "stats:", 2)[0] != strings.SplitN(b, "stats:", 2)[0] {
		t.Errorf("one file:\n%s\nthree files:\n%s", a, b)
	}
	if r2.BytesRead() <= r1.BytesRead() {
		t.Errorf("bytes read: %d over three files, %d in one", r2.BytesRead(), r1.BytesRead())
	}
}

func TestKeepParams(t *testing.T) {
	execs, _ := readAll(t, []string{fixturePath(fixtures()[0])}, Options{Tracker: pgwire.TrackerOptions{KeepParams: true}})
	e := execs[3]
	if len(e.Params) != 1 || !bytes.Equal(e.Params[0], []byte{0, 0, 0, 0, 0, 0, 0, 3}) || len(e.ParamFormats) != 1 || e.ParamFormats[0] != 1 {
		t.Errorf("params %v formats %v", e.Params, e.ParamFormats)
	}
}

func TestPorts(t *testing.T) {
	execs, r := readAll(t, []string{fixturePath(fixtures()[0])}, Options{Ports: []uint16{6432}})
	if len(execs) != 0 || !strings.Contains(strings.Join(r.Notes(), " "), "no TCP connection to port 6432") {
		t.Errorf("got %d executions, notes %q", len(execs), r.Notes())
	}
}

func TestNotACapture(t *testing.T) {
	for _, in := range []string{"", "abc", "{\"type\":1}\n", "\xd4\xc3\xb2\xa1short"} {
		if _, err := NewReader(strings.NewReader(in), Options{}); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
	// A pcap cut inside a packet is read up to the cut, with a note.
	data, err := os.ReadFile(fixturePath(fixtures()[0]))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(bytes.NewReader(data[:len(data)-30]), Options{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		_, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 7 || !strings.Contains(strings.Join(r.Notes(), " "), "truncated") {
		t.Errorf("got %d executions, notes %q", n, r.Notes())
	}
}

// merged returns the frames of several convos in time order (stable).
func merged(t testing.TB, cs ...*convo) []framed {
	var out []framed
	for _, c := range cs {
		out = append(out, c.frames(t, fixEthernet)...)
	}
	slices.SortStableFunc(out, func(a, b framed) int { return a.ts.Compare(b.ts) })
	return out
}

// Past MaxConnections the least recently active connection is ended (and
// counted), not the oldest: one still talking is followed to its end.
func TestConnectionBound(t *testing.T) {
	a := newConvo("10.0.0.1", "127.0.0.1", 41001)
	a.handshake()
	a.startup("a", "shopdb", "a")
	b := newConvo("10.0.0.2", "127.0.0.1", 41002)
	b.at = fixtureStart.Add(time.Millisecond)
	b.handshake()
	b.startup("b", "shopdb", "b")
	b.nPlusOne(0)
	a.at = fixtureStart.Add(5 * time.Millisecond)
	a.nPlusOne(1) // a is now more recently active than b
	c := newConvo("10.0.0.3", "127.0.0.1", 41003)
	c.at = fixtureStart.Add(10 * time.Millisecond)
	c.handshake() // ends b, the least recently active
	c.startup("c", "shopdb", "c")
	c.nPlusOne(1)
	a.at = fixtureStart.Add(20 * time.Millisecond)
	a.nPlusOne(1)
	a.finish()

	path := filepath.Join(t.TempDir(), "bound.pcap")
	writeCapture(t, path, false, fixEthernet, merged(t, a, b, c))
	execs, r := readAll(t, []string{path}, Options{MaxConnections: 2})
	st := r.Stats()
	if st.Connections != 3 || st.Evicted != 1 || st.Midstream != 0 {
		t.Fatalf("stats %+v; want 3 connections, 1 ended by the bound, none joined mid-way", st)
	}
	perConn := map[uint64]int{}
	for _, e := range execs {
		perConn[e.Conn.ID]++
	}
	if perConn[1] != 4 || perConn[2] != 1 || perConn[3] != 2 {
		t.Errorf("executions per connection %v; want a (1): 4, b (2): 1, c (3): 2", perConn)
	}
	if !strings.Contains(strings.Join(r.Notes(), "\n"), "1 connections ended early by the bounds") {
		t.Errorf("notes %q", r.Notes())
	}
}

// A connection with no packet for IdleTimeout (capture time) is ended by
// the periodic sweep.
func TestIdleConnectionEnded(t *testing.T) {
	a := newConvo("10.0.0.1", "127.0.0.1", 41001)
	a.handshake()
	a.startup("a", "shopdb", "a")
	a.nPlusOne(1)
	b := newConvo("10.0.0.2", "127.0.0.1", 41002)
	b.at = fixtureStart.Add(time.Second)
	b.handshake()
	b.startup("b", "shopdb", "b")
	b.nPlusOne(sweepEvery / 2) // enough packets for a sweep
	b.finish()

	path := filepath.Join(t.TempDir(), "idle.pcap")
	writeCapture(t, path, false, fixEthernet, merged(t, a, b))
	execs, r := readAll(t, []string{path}, Options{IdleTimeout: 100 * time.Millisecond})
	if st := r.Stats(); st.Connections != 2 || st.Evicted != 1 || len(execs) != 2+1+sweepEvery/2 {
		t.Fatalf("%d executions, stats %+v; want %d and a ended as idle", len(execs), st, 2+1+sweepEvery/2)
	}
}

// With Tracker.Evidence the capture's N+1 carries its proof: the lookups'
// keys (binary int8 1..6) are among the source's values (text 0..5).
func TestEvidence(t *testing.T) {
	path := fixturePath(fixtures()[0])
	budget := pgwire.NewEvidenceBudget(1 << 20)
	execs, r := readAll(t, []string{path}, Options{Tracker: pgwire.TrackerOptions{Evidence: true, EvidenceBudget: budget}})
	if len(execs) != 7 {
		t.Fatalf("got %d executions", len(execs))
	}
	src := execs[0].Result
	if src == nil || src.Rows() != 6 || !slices.Equal(src.Columns, []string{"id"}) || execs[0].ParamKeys != nil {
		t.Fatalf("source result %+v", src)
	}
	found, size := 0, execs[0].EvidenceSize()
	for _, e := range execs[1:] {
		size += e.EvidenceSize()
		if len(e.ParamKeys) != 1 || e.Result == nil || e.Result.Rows() != 1 {
			t.Fatalf("lookup: keys %v, result %+v", e.ParamKeys, e.Result)
		}
		if slices.Contains(src.Column(0), e.ParamKeys[0]) {
			found++
		}
	}
	if found != 5 {
		t.Errorf("%d of 6 lookup keys found in the source, want 5 (1..5)", found)
	}
	if budget.Used() != int64(size) {
		t.Errorf("budget used %d, evidence attached %d", budget.Used(), size)
	}
	if st := r.Stats(); st.EvidenceDropped != 0 || st.EvidenceTruncated != 0 {
		t.Errorf("stats %+v", st)
	}

	// Off by default.
	execs, _ = readAll(t, []string{path}, Options{})
	for _, e := range execs {
		if e.ParamKeys != nil || e.Result != nil {
			t.Errorf("evidence without Tracker.Evidence: %v %+v", e.ParamKeys, e.Result)
		}
	}
}
