package recording

import (
	"bytes"
	"io"
	"testing"

	"github.com/nplus1/nplus1/pgwire"
)

func FuzzReader(f *testing.F) {
	rec := evidenceRecording()
	for _, line := range bytes.SplitAfter(rec, []byte("\n")) {
		f.Add(line)
	}
	f.Add(rec)
	f.Add([]byte(`{"type":"BoundExecute","item":{"timestamp":"2019-02-25T15:08:27.24Z","session_id":1,"parameters":[1,true,{"a":[1,2]},"\ud83d\ude00\u00e9"],"param_hex":[0,9,-1],"param_formats":[1]}}`))
	f.Add([]byte(`{"item":{"query":"\ud800","timestamp":"2019-02-25T15:08:27Z"},"type":"Statement"}` + "\n" + `[[[[[[[[[[[[[[[[[[[[`))
	f.Add([]byte(`{"type":"Statement","item":{"timestamp":"2019-02-25T15:08:27Z","param_keys":"AQAAAAAAAAA","result_columns":["a","b"],"result_keys":["","AQAAAAAAAAACAAAAAAAAAA=="],"result_truncated":true}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 64<<10 {
			_, _ = sameReading(t, in) // with the sessions' heads taken, and read on every line
		}
		const maxLine = 4096
		budget := pgwire.NewEvidenceBudget(1 << 20)
		r := NewReader(bytes.NewReader(in), ReaderOptions{KeepParams: true, MaxLineBytes: maxLine, Evidence: true, EvidenceBudget: budget})
		taken := 0
		defer func() {
			if budget.Used() != int64(taken) {
				t.Fatalf("budget used %d, executions hold %d", budget.Used(), taken)
			}
		}()
		for range len(in) + 1 {
			e, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("error other than EOF from memory: %v", err)
			}
			if e.Conn == nil || e.End.Before(e.Start) || len(e.Params) != e.NumParams && e.Params != nil {
				t.Fatalf("bad execution %+v", e)
			}
			if res := e.Result; res != nil && res.Width() > len(res.Columns) {
				t.Fatalf("more digest lists than columns: %+v", res)
			}
			taken += e.EvidenceSize()
			if cap(r.line) > 2*maxLine+512<<10 || cap(r.sc.arena) > 2*maxLine+512<<10 {
				t.Fatalf("buffers grew: line %d, arena %d", cap(r.line), cap(r.sc.arena))
			}
		}
	})
}
