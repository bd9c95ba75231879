package fileseq

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSeqReadsFilesInOrderAndCounts(t *testing.T) {
	dir := t.TempDir()
	var names []string
	for i, body := range []string{"first\n", "second\n", "third\n"} {
		p := filepath.Join(dir, string(rune('a'+i)))
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		names = append(names, p)
	}
	s := New(names)
	var got []string
	for {
		if err := s.Next(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(s.Buf())
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, filepath.Base(s.Name())+":"+string(b))
		if s.More() != (len(got) < 3) {
			t.Errorf("More() = %v after %d files", s.More(), len(got))
		}
	}
	if want := "a:first\n b:second\n c:third\n"; strings.Join(got, " ") != want {
		t.Errorf("got %q, want %q", strings.Join(got, " "), want)
	}
	if s.BytesRead() != int64(len("first\nsecond\nthird\n")) {
		t.Errorf("BytesRead = %d", s.BytesRead())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := New([]string{filepath.Join(dir, "missing")}).Next(); err == nil {
		t.Error("opening a missing file: no error")
	}
}

func TestFromReader(t *testing.T) {
	s := FromReader(strings.NewReader("stream"))
	b, _ := io.ReadAll(s.Buf())
	if string(b) != "stream" || s.BytesRead() != 6 || s.Name() != "" || s.More() {
		t.Errorf("got %q, %d bytes, name %q", b, s.BytesRead(), s.Name())
	}
	if err := s.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("Next on a plain reader: %v, want EOF", err)
	}
}
