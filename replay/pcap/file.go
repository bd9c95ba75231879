package pcap

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// Link types (LINKTYPE_* of the pcap and pcapng formats).
const (
	linkNull     = 0   // BSD loopback: 4-byte address family, host byte order
	linkEthernet = 1   // Ethernet II, with VLAN tags
	linkRaw      = 101 // raw IPv4 or IPv6
	linkRawAlt   = 12  // DLT_RAW on some systems
	linkRawAlt2  = 14  // DLT_RAW on OpenBSD
	linkLoop     = 108 // OpenBSD loopback: 4-byte address family, network byte order
	linkSLL      = 113 // Linux cooked capture v1 (tcpdump -i any)
	linkIPv4     = 228
	linkIPv6     = 229
	linkSLL2     = 276 // Linux cooked capture v2 (tcpdump -i any, libpcap 1.10+)
)

// Bounds of the file reader: a packet or block larger than these is
// corrupt input, not something to allocate for.
const (
	// MaxPacketBytes is the largest captured packet accepted: tcpdump's
	// default snapshot length (MAXIMUM_SNAPLEN, 262144).
	MaxPacketBytes = 262144
	// maxBlockBytes bounds a pcapng block (a packet plus its options).
	maxBlockBytes = MaxPacketBytes + 64<<10
	// maxInterfaces bounds the interfaces of a pcapng section.
	maxInterfaces = 1024
)

// errCorrupt wraps what makes a file unreadable past some point.
var errCorrupt = errors.New("corrupt capture file")

// packet is one captured frame; data is only valid until the next read.
type packet struct {
	ts      time.Time
	link    uint32
	data    []byte
	origLen int // the frame's length on the wire (data may be shorter)
}

// packetReader reads pcap or pcapng, detected from the first bytes.
type packetReader struct {
	br  *bufio.Reader
	ng  bool
	bo  binary.ByteOrder
	buf []byte // the current packet or block body

	// pcap
	link  uint32
	nanos bool

	// pcapng: the current section's interfaces
	ifaces []ngIface
}

type ngIface struct {
	link    uint32
	tsUnits uint64 // timestamp units per second
}

func newPacketReader(br *bufio.Reader) (*packetReader, error) {
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("%w: too short for a pcap or pcapng header", errCorrupt)
	}
	r := &packetReader{br: br}
	switch binary.LittleEndian.Uint32(magic) {
	case 0xa1b2c3d4:
		r.bo = binary.LittleEndian
	case 0xa1b23c4d:
		r.bo, r.nanos = binary.LittleEndian, true
	case 0xd4c3b2a1:
		r.bo = binary.BigEndian
	case 0x4d3cb2a1:
		r.bo, r.nanos = binary.BigEndian, true
	case 0x0a0d0d0a:
		r.ng = true
		return r, nil
	default:
		return nil, fmt.Errorf("%w: not a pcap or pcapng file (magic %x)", errCorrupt, magic)
	}
	var hdr [24]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, fmt.Errorf("%w: pcap header: %v", errCorrupt, err)
	}
	// The upper bits of the link type field hold FCS information.
	r.link = r.bo.Uint32(hdr[20:24]) & 0x0fffffff
	return r, nil
}

// next returns the next packet, io.EOF at the end.
func (r *packetReader) next(p *packet) error {
	if r.ng {
		return r.nextNG(p)
	}
	var hdr [16]byte
	if _, err := io.ReadFull(r.br, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		return fmt.Errorf("%w: truncated packet header", errCorrupt)
	}
	sec, frac := r.bo.Uint32(hdr[0:4]), r.bo.Uint32(hdr[4:8])
	capLen, origLen := r.bo.Uint32(hdr[8:12]), r.bo.Uint32(hdr[12:16])
	if capLen > MaxPacketBytes {
		return fmt.Errorf("%w: packet of %d bytes (more than %d)", errCorrupt, capLen, MaxPacketBytes)
	}
	if err := r.read(int(capLen)); err != nil {
		return err
	}
	nsec := int64(frac)
	if !r.nanos {
		nsec *= 1000
	}
	p.ts = time.Unix(int64(sec), nsec).UTC()
	p.link, p.data, p.origLen = r.link, r.buf, int(max(origLen, capLen))
	return nil
}

// read reads n bytes into r.buf.
func (r *packetReader) read(n int) error {
	if cap(r.buf) < n {
		r.buf = make([]byte, n, max(n, 64<<10))
	}
	r.buf = r.buf[:n]
	if _, err := io.ReadFull(r.br, r.buf); err != nil {
		return fmt.Errorf("%w: truncated packet", errCorrupt)
	}
	return nil
}

// pcapng block types.
const (
	ngSection   = 0x0a0d0d0a
	ngInterface = 1
	ngObsolete  = 2
	ngSimple    = 3
	ngEnhanced  = 6
)

func (r *packetReader) nextNG(p *packet) error {
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(r.br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return io.EOF
			}
			return fmt.Errorf("%w: truncated block header", errCorrupt)
		}
		typ := binary.LittleEndian.Uint32(hdr[0:4])
		if typ == ngSection {
			// The byte order comes from the section's own magic.
			bom, err := r.br.Peek(4)
			if err != nil {
				return fmt.Errorf("%w: truncated section header", errCorrupt)
			}
			switch binary.LittleEndian.Uint32(bom) {
			case 0x1a2b3c4d:
				r.bo = binary.LittleEndian
			case 0x4d3c2b1a:
				r.bo = binary.BigEndian
			default:
				return fmt.Errorf("%w: bad section byte-order magic", errCorrupt)
			}
			r.ifaces = r.ifaces[:0]
		} else if r.bo == nil {
			return fmt.Errorf("%w: pcapng block before the first section header", errCorrupt)
		}
		total := r.bo.Uint32(hdr[4:8])
		if total < 12 || total%4 != 0 || total > maxBlockBytes {
			return fmt.Errorf("%w: pcapng block of %d bytes", errCorrupt, total)
		}
		if err := r.read(int(total) - 8); err != nil {
			return err
		}
		body := r.buf[:len(r.buf)-4] // without the trailing length
		switch typ {
		case ngSection:
			// Nothing else of it matters.
		case ngInterface:
			if len(body) < 8 {
				return fmt.Errorf("%w: short interface block", errCorrupt)
			}
			if len(r.ifaces) >= maxInterfaces {
				return fmt.Errorf("%w: more than %d interfaces", errCorrupt, maxInterfaces)
			}
			ifc := ngIface{link: uint32(r.bo.Uint16(body[0:2])), tsUnits: 1e6}
			r.ngOptions(body[8:], func(code uint16, v []byte) {
				if code == 9 && len(v) >= 1 { // if_tsresol
					if units, ok := tsUnits(v[0]); ok {
						ifc.tsUnits = units
					}
				}
			})
			r.ifaces = append(r.ifaces, ifc)
		case ngEnhanced, ngObsolete:
			if len(body) < 20 {
				return fmt.Errorf("%w: short packet block", errCorrupt)
			}
			var id uint32
			if typ == ngEnhanced {
				id = r.bo.Uint32(body[0:4])
			} else {
				id = uint32(r.bo.Uint16(body[0:2]))
			}
			if int(id) >= len(r.ifaces) {
				return fmt.Errorf("%w: packet of undeclared interface %d", errCorrupt, id)
			}
			ifc := r.ifaces[id]
			ts := uint64(r.bo.Uint32(body[4:8]))<<32 | uint64(r.bo.Uint32(body[8:12]))
			capLen, origLen := r.bo.Uint32(body[12:16]), r.bo.Uint32(body[16:20])
			if uint64(capLen) > uint64(len(body)-20) {
				return fmt.Errorf("%w: packet longer than its block", errCorrupt)
			}
			p.ts = unitsTime(ts, ifc.tsUnits)
			p.link, p.data, p.origLen = ifc.link, body[20:20+capLen], int(max(origLen, capLen))
			return nil
		case ngSimple:
			if len(body) < 4 || len(r.ifaces) == 0 {
				return fmt.Errorf("%w: simple packet block without interface", errCorrupt)
			}
			origLen := r.bo.Uint32(body[0:4])
			data := body[4:]
			if uint64(origLen) < uint64(len(data)) {
				data = data[:origLen]
			}
			// Simple packets carry no timestamp: keep the last one.
			p.link, p.data, p.origLen = r.ifaces[0].link, data, int(max(origLen, uint32(len(data))))
			return nil
		}
		// Other blocks (statistics, name resolution, ...) are skipped.
	}
}

// ngOptions calls fn for each option of a pcapng block.
func (r *packetReader) ngOptions(b []byte, fn func(code uint16, v []byte)) {
	for len(b) >= 4 {
		code, l := r.bo.Uint16(b[0:2]), int(r.bo.Uint16(b[2:4]))
		if code == 0 {
			return
		}
		b = b[4:]
		if l > len(b) {
			return
		}
		fn(code, b[:l])
		pad := (l + 3) &^ 3
		if pad > len(b) {
			return
		}
		b = b[pad:]
	}
}

// tsUnits decodes if_tsresol: 10^-n seconds, or 2^-n with the high bit.
func tsUnits(v byte) (uint64, bool) {
	n := uint64(v & 0x7f)
	if v&0x80 != 0 {
		if n > 63 {
			return 0, false
		}
		return 1 << n, true
	}
	if n > 19 {
		return 0, false
	}
	u := uint64(1)
	for range n {
		u *= 10
	}
	return u, true
}

func unitsTime(ts, units uint64) time.Time {
	if units == 0 {
		units = 1e6
	}
	sec := ts / units
	rem := ts % units
	nsec := uint64(math.Round(float64(rem) * 1e9 / float64(units)))
	if sec > math.MaxInt64/2 {
		sec = math.MaxInt64 / 2
	}
	return time.Unix(int64(sec), int64(nsec)).UTC()
}
