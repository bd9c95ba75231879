package pglog

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

func FuzzReader(f *testing.F) {
	f.Add(uint8(0), []byte(csvSample))
	f.Add(uint8(1), []byte(jsonOf(f, csvSample)))
	f.Add(uint8(0), []byte(`2026-03-14 15:09:26.000 UTC,"u","d",1,"h:1",s,1,"SELECT",x,x,0,LOG,00000,"duration: 1 ms  execute a/b: SELECT $1","parameters: $1 = 'x'', $2 = NULL, $3",,,,,,,,"app"`))
	f.Add(uint8(0), []byte("\"unterminated,\n\n\"\"\n"))
	f.Fuzz(func(t *testing.T, format uint8, in []byte) {
		name := CSV
		if format%2 == 1 {
			name = JSON
		}
		const max = 4096
		r, err := NewReader(name, strings.NewReader(string(in)), Options{MaxRecordBytes: max, MaxSessions: 4, KeepParams: true})
		if err != nil {
			t.Fatal(err)
		}
		for range len(in) + 2 {
			e, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("error other than EOF reading from memory: %v", err)
			}
			if e.Conn == nil || len(e.SQL) > DefaultMaxSQLBytes || e.End.Before(e.Start) && e.SQLState == "" {
				t.Fatalf("bad execution %+v", e)
			}
		}
		if r.sessions.Len() > 4 || cap(r.csv.buf) > 2*max || cap(r.line) > 2*max+64<<10 {
			t.Fatalf("bounds: %d sessions, buffers %d, %d", r.sessions.Len(), cap(r.csv.buf), cap(r.line))
		}
	})
}
