package pgwire

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// The parameter bits: one bit per parameter, read as the Bind streams by,
// in whatever chunks it arrives, and equal to what ParamBits computes from
// the values.
func TestTrackerParamBits(t *testing.T) {
	i8 := func(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }
	i4 := func(v int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }
	i2 := func(v int16) []byte { return binary.BigEndian.AppendUint16(nil, uint16(v)) }
	tests := []struct {
		name        string
		formats     []int16
		values      [][]byte
		wild, large uint64
	}{
		{"text patterns", nil, [][]byte{[]byte("%john%"), []byte("john%"), []byte("_x"), []byte("x_")}, 0b0101, 0},
		{"text integers", nil, [][]byte{[]byte("999"), []byte("1000"), []byte("+2500"), []byte("1_000"), []byte("-5000"), []byte("12a4"), []byte("100000000000000000000000")}, 0, 0b01110},
		{"binary integers, one code for all", []int16{1}, [][]byte{i8(1000), i8(999), i4(70000), i2(1500), i2(-1), i8(-5000)}, 0, 0b1101},
		{"mixed codes", []int16{0, 1, 1}, [][]byte{[]byte("%a"), i8(4000), []byte("%bytes")}, 0b101, 0b010},
		{"a binary value of another width is no integer", []int16{1}, [][]byte{{0, 0, 0x10}, {0, 0x10, 0, 0, 0}}, 0, 0},
		{"NULL and empty values set nothing", nil, [][]byte{nil, {}, []byte("%")}, 0b100, 0},
		{"a binary value that starts with the byte %", []int16{1}, [][]byte{i4(0x25000000)}, 0b1, 0b1},
	}
	for _, tt := range tests {
		if w, l := ParamBits(tt.formats, tt.values); w != tt.wild || l != tt.large {
			t.Errorf("%s: ParamBits = %b %b, want %b %b", tt.name, w, l, tt.wild, tt.large)
		}
		script := []trStep{
			fe(parse("s", "select 1"),
				&pgproto3.Bind{PreparedStatement: "s", ParameterFormatCodes: tt.formats, Parameters: tt.values},
				execute("", 0),
				&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s", ParameterFormatCodes: tt.formats, Parameters: tt.values},
				execute("p", 1), execute("p", 1),
				sync_),
			be(parseComplete, bindComplete, cc("SELECT 1"), bindComplete, dataRow("1"), &pgproto3.PortalSuspended{}, dataRow("1"), cc("SELECT 1"), rfq('I')),
		}
		for _, split := range []struct {
			name string
			c    chunker
		}{{"whole", whole}, {"bytes", byteByByte}, {"random", randomChunks(7)}} {
			for _, ev := range []bool{false, true} {
				r := runScript(t, script, TrackerOptions{Evidence: ev}, split.c)
				if r.err != nil || len(r.got) != 3 {
					t.Fatalf("%s/%s: got %d executions, err %v", tt.name, split.name, len(r.got), r.err)
				}
				for i, e := range r.got {
					if e.ParamWildcard != tt.wild || e.ParamLarge != tt.large {
						t.Errorf("%s/%s/evidence=%v: execution %d has bits %b %b, want %b %b",
							tt.name, split.name, ev, i, e.ParamWildcard, e.ParamLarge, tt.wild, tt.large)
					}
				}
			}
		}
	}
}

// Bits cover the first 64 parameters; later ones set nothing.
func TestTrackerParamBitsWide(t *testing.T) {
	vals := make([][]byte, 70)
	for i := range vals {
		vals[i] = []byte(fmt.Sprint(1000 + i))
	}
	vals[63], vals[64] = []byte("%last"), []byte("%beyond")
	w, l := ParamBits(nil, vals)
	if w != 1<<63 || l != ^uint64(0)&^(1<<63) {
		t.Errorf("ParamBits = %x %x", w, l)
	}
	r := runScript(t, []trStep{
		fe(parse("", "select 1"), &pgproto3.Bind{Parameters: vals}, execute("", 0), sync_),
		be(parseComplete, bindComplete, cc("SELECT 1"), rfq('I')),
	}, TrackerOptions{}, byteByByte)
	if len(r.got) != 1 || r.got[0].ParamWildcard != w || r.got[0].ParamLarge != l {
		t.Fatalf("got %+v", r.got)
	}
}
