package fingerprint

import (
	"reflect"
	"testing"
)

func TestCommenterTags(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		sql   string
		tags  map[string]string
		trace string
	}{
		{"SELECT 1", nil, ""},
		{"SELECT 1 -- route='/a'", nil, ""},
		{"SELECT 1 /*traceparent='" + tp + "'*/", map[string]string{"traceparent": tp}, "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"/*traceparent='" + tp + "'*/ SELECT 1", map[string]string{"traceparent": tp}, "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"SELECT 1 /* action='a', controller='b' */", map[string]string{"action": "a", "controller": "b"}, ""},
		{"SELECT 1 /*route='%2Fa%2F%7Bid%7D',framework='spring'*/", map[string]string{"route": "/a/{id}", "framework": "spring"}, ""},
		{"SELECT 1 /*a='x\\'y'*/", map[string]string{"a": "x'y"}, ""},
		{"SELECT 1 /*a='bad%zz'*/", map[string]string{"a": "bad%zz"}, ""},
		{"SELECT 1 /*a='x'*/ /* plain note */", map[string]string{"a": "x"}, ""},
		{"SELECT 1 /*a='x'*/; SELECT 2 /*b='y'*/", map[string]string{"b": "y"}, ""},
		{"SELECT '/*a=''x''*/'", nil, ""},
		{"SELECT 1 /*a='x',*/", map[string]string{"a": "x"}, ""},
		{"SELECT 1 /*a='x' b='y'*/", nil, ""},
		{"SELECT 1 /*a=x*/", nil, ""},
		{"SELECT 1 /*a='unterminated*/", nil, ""},
		{"SELECT 1 /**/", nil, ""},
		{"SELECT 1 /*controller:users,action:show*/", map[string]string{"controller": "users", "action": "show"}, ""},
		{"SELECT 1 /*TODO: fix*/", nil, ""},
		{"SELECT 1 /*note:x*/", nil, ""},
	}
	for _, tt := range tests {
		r := ofOn(tt.sql)
		if !reflect.DeepEqual(r.Tags, tt.tags) || r.TraceID != tt.trace {
			t.Errorf("Of(%q): got tags %v trace %q, want %v %q", tt.sql, r.Tags, r.TraceID, tt.tags, tt.trace)
		}
	}
}

func TestTraceID(t *testing.T) {
	tests := []struct{ tp, want string }{
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", ""},
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ""},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", ""},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", ""},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", ""},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := traceID(tt.tp); got != tt.want {
			t.Errorf("traceID(%q) = %q, want %q", tt.tp, got, tt.want)
		}
	}
}

// TestTagsDoNotChangeFingerprint: the same statement with and without tags.
func TestTagsDoNotChangeFingerprint(t *testing.T) {
	plain := ofOn("SELECT id FROM users WHERE id = $1").Statements[0]
	tagged := ofOn("SELECT id FROM users WHERE id = $1 /*controller='users',traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/").Statements[0]
	if plain.ID != tagged.ID || plain.Normalized != tagged.Normalized || plain.LiteralsHash != tagged.LiteralsHash {
		t.Errorf("tags changed the statement: %+v vs %+v", plain, tagged)
	}
}
