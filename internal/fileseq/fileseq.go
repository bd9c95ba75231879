// Package fileseq reads several files one after another as one stream (a
// capture split by tcpdump -C, a server log split by rotation), through one
// buffered reader, and counts the bytes read for progress reports.
package fileseq

import (
	"bufio"
	"io"
	"os"
	"sync/atomic"
)

// bufSize is the buffer of the stream: large reads, few system calls.
const bufSize = 256 << 10

// Seq is a sequence of files, or one io.Reader. It is used by one
// goroutine; BytesRead may be called from any.
type Seq struct {
	files []string // not opened yet
	name  string   // the current file; "" for a plain reader
	f     *os.File // the current file; nil for a plain reader
	src   io.Reader
	n     atomic.Int64 // bytes read from all sources so far
	br    *bufio.Reader
}

// New returns a Seq over files; call Next to open the first.
func New(files []string) *Seq { return &Seq{files: files} }

// FromReader returns a Seq over one stream; its Buf is ready to read.
func FromReader(r io.Reader) *Seq {
	s := &Seq{src: r}
	s.br = bufio.NewReaderSize(s, bufSize)
	return s
}

// Read reads from the current source and counts what it read; Buf reads
// through it.
func (s *Seq) Read(p []byte) (int, error) {
	if s.src == nil {
		return 0, io.EOF
	}
	n, err := s.src.Read(p)
	s.n.Add(int64(n))
	return n, err
}

// Next closes the current file and opens the next, resetting Buf onto it;
// io.EOF when no file remains.
func (s *Seq) Next() error {
	if err := s.Close(); err != nil {
		return err
	}
	if len(s.files) == 0 {
		return io.EOF
	}
	s.name, s.files = s.files[0], s.files[1:]
	f, err := os.Open(s.name)
	if err != nil {
		return err
	}
	s.f, s.src = f, f
	if s.br == nil {
		s.br = bufio.NewReaderSize(s, bufSize)
	} else {
		s.br.Reset(s)
	}
	return nil
}

// More reports whether files remain after the current one.
func (s *Seq) More() bool { return len(s.files) > 0 }

// Buf is the buffered reader over the current source. It stays the same
// value across Next.
func (s *Seq) Buf() *bufio.Reader { return s.br }

// Name is the current file's name, "" for a plain reader.
func (s *Seq) Name() string { return s.name }

// BytesRead is the number of bytes read from all sources so far.
func (s *Seq) BytesRead() int64 { return s.n.Load() }

// Close closes the current file.
func (s *Seq) Close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f, s.src = nil, nil
	return err
}
