package recording

import (
	"bytes"
	"testing"
	"time"

	"github.com/nplus1/nplus1/pgwire"
)

// A recording read back gives the detector the parameter bits the tracker
// passed live: a LIKE pattern that starts with a wildcard, a large integer.
func TestReaderParamBits(t *testing.T) {
	params := [][]byte{[]byte("%ser 1%"), []byte("1500"), []byte("user 1%")}
	wild, large := pgwire.ParamBits(nil, params)
	if wild != 0b001 || large != 0b010 {
		t.Fatalf("ParamBits = %b %b", wild, large)
	}
	var buf bytes.Buffer
	w := NewWriter(&buf, WriterOptions{Now: func() time.Time { return t0 }})
	e := &pgwire.Execution{Conn: &pgwire.ConnInfo{ID: 1, User: "u", Database: "d"}, Start: t0, End: t0,
		SQL: "SELECT id FROM users WHERE name LIKE $1 OFFSET $2", Protocol: "extended", Params: params,
		ParamsHash: pgwire.HashParams(nil, params), NumParams: 3, ParamWildcard: wild, ParamLarge: large, Command: "SELECT", Rows: 1}
	if err := w.Write(e); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, keep := range []bool{false, true} {
		got, err := NewReader(bytes.NewReader(buf.Bytes()), ReaderOptions{KeepParams: keep}).Next()
		if err != nil {
			t.Fatal(err)
		}
		if got.ParamWildcard != wild || got.ParamLarge != large {
			t.Errorf("keep %v: bits %b %b, want %b %b", keep, got.ParamWildcard, got.ParamLarge, wild, large)
		}
	}
}
