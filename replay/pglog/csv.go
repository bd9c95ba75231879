package pglog

import (
	"bufio"
	"errors"
	"io"
)

// csvReader reads RFC 4180 records (PostgreSQL's csvlog) with a bound on
// the record size: a longer record is consumed, to its real end, without
// being kept.
type csvReader struct {
	br     *bufio.Reader
	max    int
	buf    []byte // the current record's field bytes
	ends   []int  // end offset of each field in buf
	fields [][]byte
}

var errTooLong = errors.New("record too long")

// read returns the next record's fields, valid until the next call. It
// returns errTooLong (with no fields) for a record over the bound, and
// io.EOF at the end.
func (r *csvReader) read() ([][]byte, error) {
	r.buf, r.ends = r.buf[:0], r.ends[:0]
	if cap(r.buf) > 1<<20 {
		r.buf = nil
	}
	tooLong := false
	quoted := false
	atStart := true // at the start of a field
	any := false
	for {
		b, err := r.br.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) && any {
				break
			}
			return nil, err
		}
		any = true
		if quoted {
			if b == '"' {
				next, err := r.br.ReadByte()
				if err == nil && next == '"' {
					r.add(b, &tooLong)
					continue
				}
				if err == nil {
					_ = r.br.UnreadByte()
				}
				quoted = false
				continue
			}
			r.add(b, &tooLong)
			continue
		}
		switch b {
		case '"':
			if atStart {
				quoted = true
				atStart = false
				continue
			}
			r.add(b, &tooLong)
		case ',':
			r.ends = append(r.ends, len(r.buf))
			if len(r.ends) > 64 {
				tooLong = true
				r.ends = r.ends[:64]
			}
			atStart = true
			continue
		case '\n':
			goto done
		case '\r':
			// Part of a \r\n line end; kept inside quotes only.
		default:
			r.add(b, &tooLong)
		}
		atStart = false
	}
done:
	r.ends = append(r.ends, len(r.buf))
	if tooLong {
		r.buf, r.ends = r.buf[:0], r.ends[:0]
		return nil, errTooLong
	}
	r.fields = r.fields[:0]
	start := 0
	for _, end := range r.ends {
		r.fields = append(r.fields, r.buf[start:end:end])
		start = end
	}
	return r.fields, nil
}

func (r *csvReader) add(b byte, tooLong *bool) {
	if *tooLong {
		return
	}
	if len(r.buf) >= r.max {
		*tooLong = true
		return
	}
	r.buf = append(r.buf, b)
}
