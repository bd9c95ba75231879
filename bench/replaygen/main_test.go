package main

import (
	"io"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/nplus1/nplus1/internal/valuekey"
	"github.com/nplus1/nplus1/pgwire"
	"github.com/nplus1/nplus1/replay/pcap"
	"github.com/nplus1/nplus1/replay/recording"
)

// The recording holds what the tracker makes of the pcap, value evidence
// included: both are read in this process, so their digests compare once
// the pcap's are sealed as a recording writes them.
func TestRecordingMatchesPcap(t *testing.T) {
	dir := t.TempDir()
	if err := generate(2200, 5, dir); err != nil {
		t.Fatal(err)
	}
	pr, err := pcap.Open([]string{filepath.Join(dir, "workload.pcap")}, pcap.Options{Tracker: pgwire.TrackerOptions{Evidence: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	rr, err := recording.Open([]string{filepath.Join(dir, "workload.jsonl")}, recording.ReaderOptions{Evidence: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	fromPcap, fromRec := readAll(t, pr.Next), readAll(t, rr.Next)
	if len(fromPcap) != 2200 || len(fromRec) != len(fromPcap) {
		t.Fatalf("%d executions from the pcap, %d from the recording; want 2200", len(fromPcap), len(fromRec))
	}
	for i, p := range fromPcap {
		r := fromRec[i]
		sealAll(p)
		if p.SQL != r.SQL || !p.Start.Equal(r.Start) || !slices.Equal(p.ParamKeys, r.ParamKeys) || !reflect.DeepEqual(p.Result, r.Result) {
			t.Fatalf("#%d differs:\n pcap      %s %v %v %+v\n recording %s %v %v %+v", i, p.SQL, p.Start, p.ParamKeys, p.Result, r.SQL, r.Start, r.ParamKeys, r.Result)
		}
	}
}

// sealAll replaces e's digests with their sealed forms (valuekey.Seal).
func sealAll(e *pgwire.Execution) {
	seal := func(keys []valuekey.Key) []valuekey.Key {
		out := slices.Clone(keys) // nil stays nil
		for i, k := range out {
			out[i] = valuekey.Seal(k)
		}
		return out
	}
	e.ParamKeys = seal(e.ParamKeys)
	if r := e.Result; r != nil {
		cols := make([][]valuekey.Key, r.Width())
		for c := range cols {
			cols[c] = seal(r.Column(c))
		}
		e.Result = pgwire.NewResultKeys(r.Columns, cols, r.Truncated)
	}
}

func readAll(t *testing.T, next func() (*pgwire.Execution, error)) []*pgwire.Execution {
	t.Helper()
	var out []*pgwire.Execution
	for {
		e, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	slices.SortStableFunc(out, func(a, b *pgwire.Execution) int { return a.Start.Compare(b.Start) })
	return out
}
