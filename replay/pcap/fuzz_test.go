package pcap

import (
	"bytes"
	"io"
	"os"
	"testing"
)

func FuzzReader(f *testing.F) {
	for _, fx := range fixtures() {
		if data, err := os.ReadFile(fixturePath(fx)); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c\x2b\x1a\x01\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\x1c\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := NewReader(bytes.NewReader(in), Options{MaxConnections: 8, MaxBufferedBytes: 1 << 16})
		if err != nil {
			return
		}
		for range 100000 {
			e, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("error other than EOF reading from memory: %v", err)
			}
			if e.Conn == nil {
				t.Fatal("execution without a connection")
			}
		}
		if r.conns.Len() > 8 || r.oooBytes > 1<<16+maxOOOBytes || r.oooBytes < 0 {
			t.Fatalf("bounds: %d connections, %d buffered bytes", r.conns.Len(), r.oooBytes)
		}
		if cap(r.pr.buf) > maxBlockBytes+64<<10 {
			t.Fatalf("packet buffer grew to %d", cap(r.pr.buf))
		}
	})
}
