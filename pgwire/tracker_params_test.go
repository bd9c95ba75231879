package pgwire

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func TestTrackerKeepParams(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 100)
	script := []trStep{
		fe(parse("s", "select $1, $2, $3"),
			&pgproto3.Bind{PreparedStatement: "s", ParameterFormatCodes: []int16{0, 1, 0},
				Parameters: [][]byte{[]byte("abc"), {0, 0, 0, 7}, nil}},
			execute("", 0),
			&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s", Parameters: [][]byte{[]byte(""), big, []byte("z")}},
			execute("p", 1), execute("p", 1),
			sync_),
		be(parseComplete, bindComplete, cc("SELECT 1"), bindComplete, dataRow("1"), &pgproto3.PortalSuspended{}, dataRow("1"), cc("SELECT 1"), rfq('I')),
	}
	for _, split := range []struct {
		name string
		c    chunker
	}{{"whole", whole}, {"bytes", byteByByte}, {"random", randomChunks(3)}} {
		t.Run(split.name, func(t *testing.T) {
			r := runScript(t, script, TrackerOptions{KeepParams: true}, split.c)
			if r.err != nil || len(r.got) != 3 {
				t.Fatalf("got %d executions, err %v; want 3", len(r.got), r.err)
			}
			e := r.got[0]
			if want := [][]byte{[]byte("abc"), {0, 0, 0, 7}, nil}; !equalParams(e.Params, want) {
				t.Errorf("params: got %q, want %q", e.Params, want)
			}
			if len(e.ParamFormats) != 3 || e.ParamFormats[1] != 1 || e.ParamsTruncated {
				t.Errorf("formats: got %v (truncated %v), want [0 1 0]", e.ParamFormats, e.ParamsTruncated)
			}
			if e.Params[2] != nil || e.Params[0] == nil {
				t.Errorf("NULL and '' must differ: got %#v", e.Params)
			}
			if h := HashParams(e.ParamFormats, e.Params); h != e.ParamsHash {
				t.Errorf("HashParams: got %x, tracker hashed %x", h, e.ParamsHash)
			}
			for _, e := range r.got[1:] {
				if want := [][]byte{{}, big, []byte("z")}; !equalParams(e.Params, want) || e.ParamFormats != nil {
					t.Errorf("portal p: got %q %v", e.Params, e.ParamFormats)
				}
				if h := HashParams(e.ParamFormats, e.Params); h != e.ParamsHash {
					t.Errorf("HashParams: got %x, tracker hashed %x", h, e.ParamsHash)
				}
			}
		})
	}

	t.Run("cap", func(t *testing.T) {
		r := runScript(t, script, TrackerOptions{KeepParams: true, MaxParamBytes: 50}, whole)
		if len(r.got) != 3 {
			t.Fatalf("got %d executions", len(r.got))
		}
		if r.got[0].ParamsTruncated || r.got[0].Params == nil {
			t.Errorf("small bind: truncated %v", r.got[0].ParamsTruncated)
		}
		if !r.got[1].ParamsTruncated || r.got[1].Params != nil || r.got[1].ParamsHash == 0 {
			t.Errorf("big bind: got params %q truncated %v hash %x, want none, truncated, a hash", r.got[1].Params, r.got[1].ParamsTruncated, r.got[1].ParamsHash)
		}
	})

	t.Run("off", func(t *testing.T) {
		r := runScript(t, script, TrackerOptions{}, whole)
		for _, e := range r.got {
			if e.Params != nil || e.ParamFormats != nil || e.ParamsTruncated {
				t.Errorf("without KeepParams: got params %q formats %v", e.Params, e.ParamFormats)
			}
		}
		if r.tr.portalParams != 0 || r.tr.pendingSQL != 0 {
			t.Errorf("accounting: portal params %d, pending %d; want 0", r.tr.portalParams, r.tr.pendingSQL)
		}
	})
}

func TestHashParamsNone(t *testing.T) {
	if h := HashParams(nil, nil); h != 0 {
		t.Errorf("got %x, want 0", h)
	}
}

func equalParams(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if (a[i] == nil) != (b[i] == nil) || !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// A Bind read whole in one chunk (bindWhole) leaves what the same Bind read
// in pieces leaves: its ParamsHash, parameter bits and keys, for every mix
// of format codes, NULL and empty values, long values, many parameters and
// result format codes, with and without the evidence.
func TestTrackerBindWhole(t *testing.T) {
	many := make([][]byte, 70)
	for i := range many {
		many[i] = []byte(strconv.Itoa(1000 * i))
	}
	many[3], many[66] = []byte("%x"), nil
	long := bytes.Repeat([]byte("9"), 80)
	binds := []*pgproto3.Bind{
		bindF("", "s", nil, nil, s("12345")),
		bindF("", "s", []int16{1}, []int16{1}, i4(4711), i8(1<<40), i2(-3)),
		bindF("p", "s", []int16{0, 1, 0}, []int16{0, 1}, s("_ab"), i4(999), nil),
		bindF("", "", []int16{0, 0}, nil, s(""), long, s("0001000")),
		bindF("", "s", nil, []int16{1, 0, 1}, many...),
		bindF("", "s", nil, nil),
		bindF("", "s", []int16{1}, nil, uuidBin),
	}
	for _, ev := range []bool{false, true} {
		var msgs []pgproto3.Message
		for _, b := range binds {
			msgs = append(msgs, parse(b.PreparedStatement, "select 1"), b, execute(b.DestinationPortal, 0))
		}
		script := []trStep{fe(append(msgs, sync_)...)}
		var replies []pgproto3.Message
		for range binds {
			replies = append(replies, parseComplete, bindComplete, cc("SELECT 1"))
		}
		script = append(script, be(append(replies, rfq('I'))...))
		opts := TrackerOptions{Evidence: ev}
		r := evRun(t, script, opts)
		if len(r.got) != len(binds) {
			t.Fatalf("evidence %v: %d executions, want %d", ev, len(r.got), len(binds))
		}
		for i, e := range r.got {
			b := binds[i]
			wild, large := ParamBits(b.ParameterFormatCodes, b.Parameters)
			if h := HashParams(b.ParameterFormatCodes, b.Parameters); e.ParamsHash != h || e.NumParams != len(b.Parameters) ||
				e.ParamWildcard != wild || e.ParamLarge != large {
				t.Errorf("evidence %v, bind %d: hash %x, %d params, bits %b %b; want %x, %d, %b %b", ev, i,
					e.ParamsHash, e.NumParams, e.ParamWildcard, e.ParamLarge, h, len(b.Parameters), wild, large)
			}
			if ev && len(e.ParamKeys) != min(len(b.Parameters), maxParamKeys) {
				t.Errorf("bind %d: %d keys for %d parameters", i, len(e.ParamKeys), len(b.Parameters))
			}
		}
	}
}
