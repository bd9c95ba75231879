package replay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/nplus1/nplus1/pgwire"
	"github.com/nplus1/nplus1/replay/pcap"
	"github.com/nplus1/nplus1/replay/pglog"
	"github.com/nplus1/nplus1/replay/recording"
)

// Input formats: OpenOptions.Format and InputStats.Formats.
const (
	FormatAuto      = "auto" // detected per file
	FormatPcap      = "pcap" // pcap and pcapng
	FormatRecording = "recording"
	FormatCSVLog    = pglog.CSV
	FormatJSONLog   = pglog.JSON
)

// Formats are the values of OpenOptions.Format, FormatAuto first.
func Formats() []string {
	return []string{FormatAuto, FormatPcap, FormatRecording, FormatCSVLog, FormatJSONLog}
}

// OpenOptions configure Open.
type OpenOptions struct {
	// Format is the format of every file; "" or FormatAuto detects each
	// file's from its first bytes.
	Format string
	// Ports are the PostgreSQL server ports in pcap files (5432 when
	// empty).
	Ports []uint16
	// KeepParams keeps the bound parameter values, for re-execution.
	KeepParams bool
	// Evidence attaches value evidence (digests of the bound parameters and
	// of the first rows of results) for the detector's data-flow proof: to
	// the executions of pcap files (pgwire.TrackerOptions.Evidence), and of
	// recordings that hold it (recording.ReaderOptions.Evidence); from
	// EvidenceBudget, nil for no global bound. Server logs carry no result
	// values and attach none.
	Evidence       bool
	EvidenceBudget *pgwire.EvidenceBudget
}

// Input is the executions of a replay's input files, read as one Source.
// Next is called from one goroutine; BytesRead and TotalBytes may be called
// from any.
type Input interface {
	// Next returns the next execution, io.EOF after the last.
	Next() (*pgwire.Execution, error)
	// BytesRead is how far the readers got in the files, for progress.
	BytesRead() int64
	// TotalBytes is the size of the files when they were opened.
	TotalBytes() int64
	// Files are the files read, grouped by format in the order the
	// formats first appear, each group in the order given.
	Files() []File
	// Notes describe, for a person, what the readers could not follow;
	// complete after the last execution.
	Notes() []string
	// Problems say what of the files could not be read, one line each: a
	// file cut short or corrupt past some point, records or lines that are
	// not of the file's format. Each is also among the Notes; complete
	// after the last execution. What the readers could not follow in
	// readable files (connections joined mid-way, TLS, packets missing from
	// a capture) is not a problem, only a note.
	Problems() []string
	// Executions is the number of executions Next has returned.
	Executions() int64
	// Close closes the files still open.
	Close() error
}

// File is one input file and its format.
type File struct {
	Path, Format string
}

// NewInputStats describes what in read, for a Report.
func NewInputStats(in Input) InputStats {
	st := InputStats{Formats: map[string]string{}, Bytes: in.BytesRead(), Executions: in.Executions(),
		Notes: in.Notes(), Problems: in.Problems()}
	for _, f := range in.Files() {
		st.Files = append(st.Files, f.Path)
		st.Formats[f.Path] = f.Format
	}
	return st
}

// reader is what each format's reader offers.
type reader interface {
	Next() (*pgwire.Execution, error)
	BytesRead() int64
	Notes() []string
	Close() error
}

// openers adapt each format's reader: files of one format are read in order
// as one stream (a capture split by tcpdump -C, a log split by rotation, a
// recording split by --record-file-bytes).
var openers = map[string]func(files []string, o OpenOptions) (reader, error){
	FormatPcap: func(files []string, o OpenOptions) (reader, error) {
		return adapt(pcap.Open(files, pcap.Options{Ports: o.Ports, Tracker: pgwire.TrackerOptions{
			KeepParams: o.KeepParams, Evidence: o.Evidence, EvidenceBudget: o.EvidenceBudget}}))
	},
	FormatRecording: func(files []string, o OpenOptions) (reader, error) {
		return adapt(recording.Open(files, recording.ReaderOptions{KeepParams: o.KeepParams,
			Evidence: o.Evidence, EvidenceBudget: o.EvidenceBudget}))
	},
	FormatCSVLog: func(files []string, o OpenOptions) (reader, error) {
		return adapt(pglog.Open(pglog.CSV, files, pglog.Options{KeepParams: o.KeepParams}))
	},
	FormatJSONLog: func(files []string, o OpenOptions) (reader, error) {
		return adapt(pglog.Open(pglog.JSON, files, pglog.Options{KeepParams: o.KeepParams}))
	},
}

func adapt[R reader](r R, err error) (reader, error) {
	if err != nil {
		return nil, err
	}
	return r, nil
}

// Open opens the input files: each path is a file, or a directory that
// stands for its regular files in name order. Each file's format is
// detected from its first bytes unless opts.Format names one. The files of
// one format are read as one stream, in the order given; the formats are
// read one after the other, in the order they first appear.
//
// Its errors say what is wrong with the input, and how to fix it.
func Open(paths []string, opts OpenOptions) (Input, error) {
	if opts.Format != "" && opts.Format != FormatAuto && openers[opts.Format] == nil {
		return nil, fmt.Errorf("unknown input format %s", opts.Format)
	}
	files, err := expandPaths(paths)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no input files in %s", strings.Join(paths, ", "))
	}
	var formats []string
	byFormat := map[string][]string{}
	for _, f := range files {
		format := opts.Format
		if format == "" || format == FormatAuto {
			if format, err = detectFormat(f); err != nil {
				return nil, err
			}
		}
		if !slices.Contains(formats, format) {
			formats = append(formats, format)
		}
		byFormat[format] = append(byFormat[format], f)
	}
	in := &input{}
	var srcs []Source
	for _, format := range formats {
		r, err := openers[format](byFormat[format], opts)
		if err != nil {
			in.Close()
			return nil, err
		}
		in.readers = append(in.readers, r)
		in.formats = append(in.formats, format)
		srcs = append(srcs, r)
		for _, f := range byFormat[format] {
			in.files = append(in.files, File{Path: f, Format: format})
			if st, err := os.Stat(f); err == nil {
				in.total += st.Size()
			}
		}
	}
	in.src = Sources(srcs...)
	return in, nil
}

// input reads the readers of each format one after the other.
type input struct {
	readers    []reader
	formats    []string // of each reader
	src        Source   // the readers, chained
	files      []File
	total      int64
	executions int64 // returned by Next
}

func (in *input) Next() (*pgwire.Execution, error) {
	e, err := in.src.Next()
	if err == nil {
		in.executions++
	}
	return e, err
}

func (in *input) Executions() int64 { return in.executions }

func (in *input) Problems() []string {
	var out []string
	for i, r := range in.readers {
		switch r := r.(type) {
		case *pcap.Reader:
			out = append(out, r.Problems()...)
		case *recording.Reader:
			if st := r.Stats(); st.Skipped > 0 {
				out = append(out, fmt.Sprintf("recording: %d of %d lines skipped (first: %s)", st.Skipped, st.Lines, r.FirstProblem()))
			}
		case *pglog.Reader:
			if st := r.Stats(); st.Skipped > 0 {
				// The reader's note names the first record skipped.
				p := fmt.Sprintf("%s: %d of %d records skipped", in.formats[i], st.Skipped, st.Records)
				for _, n := range r.Notes() {
					if strings.HasPrefix(n, p) {
						p = n
						break
					}
				}
				out = append(out, p)
			}
		}
	}
	return out
}

func (in *input) BytesRead() int64 {
	var n int64
	for _, r := range in.readers {
		n += r.BytesRead()
	}
	return n
}

func (in *input) TotalBytes() int64 { return in.total }

func (in *input) Files() []File { return in.files }

func (in *input) Notes() []string {
	var notes []string
	logs := false
	for _, r := range in.readers {
		notes = append(notes, r.Notes()...)
	}
	for _, f := range in.files {
		logs = logs || f.Format == FormatCSVLog || f.Format == FormatJSONLog
	}
	if logs {
		notes = append(notes, "server logs hold no result rows: N+1s found in them are judged on repetition alone (evidence \"repetition\"), without the data-flow proof a capture gives")
	}
	return notes
}

func (in *input) Close() error {
	var errs []error
	for _, r := range in.readers {
		errs = append(errs, r.Close())
	}
	return errors.Join(errs...)
}

// expandPaths replaces each directory in paths by its regular files, in
// name order.
func expandPaths(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		var names []string
		for _, e := range ents {
			if e.Type().IsRegular() {
				names = append(names, filepath.Join(p, e.Name()))
			}
		}
		sort.Strings(names)
		out = append(out, names...)
	}
	return out, nil
}

// detectFormat names the format of a file from its first bytes.
func detectFormat(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 4096)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", err
	}
	return sniff(name, head[:n])
}

// sniff names the format of a file that starts with head: the magic
// numbers of pcap (either byte order, micro- and nanoseconds) and pcapng,
// else from its first line: a recording's envelope, a jsonlog object, or a
// csvlog record (a timestamp and the 20-odd fields).
func sniff(name string, head []byte) (string, error) {
	if len(head) >= 4 {
		switch string(head[:4]) {
		case "\xd4\xc3\xb2\xa1", "\xa1\xb2\xc3\xd4", "\x4d\x3c\xb2\xa1", "\xa1\xb2\x3c\x4d", "\x0a\x0d\x0d\x0a":
			return FormatPcap, nil
		}
	}
	line := head
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimSpace(line)
	switch {
	case len(line) == 0:
		return "", fmt.Errorf("%s: empty, or not a format nplus1 reads; --input-format names one", name)
	case line[0] == '{' && bytes.Contains(line, []byte(`"item"`)):
		return FormatRecording, nil
	case line[0] == '{' && (bytes.Contains(line, []byte(`"error_severity"`)) || bytes.Contains(line, []byte(`"session_id"`))):
		return FormatJSONLog, nil
	case len(line) > 20 && line[4] == '-' && line[7] == '-' && line[10] == ' ' && bytes.Count(line, []byte(",")) >= 10:
		return FormatCSVLog, nil
	}
	return "", fmt.Errorf("%s: not a pcap, pcapng, nplus1 recording, csvlog or jsonlog file; --input-format names one", name)
}
