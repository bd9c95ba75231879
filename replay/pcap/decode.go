package pcap

import "encoding/binary"

// segment is a TCP segment decoded from a packet; payload points into the
// packet's data.
type segment struct {
	src, dst     [16]byte // IPv4 addresses as IPv4-mapped IPv6
	v6           bool
	sport, dport uint16
	seq          uint32
	syn, fin     bool
	rst, ack     bool
	payload      []byte
	missing      int // payload bytes the capture did not keep (snapshot length)
}

// Why a packet was not a TCP segment (Stats.NotTCP and friends).
const (
	decodeOK = iota
	decodeNotTCP
	decodeFragment
	decodeShort
	decodeLink // unsupported link type
)

var v4InV6Prefix = [12]byte{10: 0xff, 11: 0xff}

// decode reads the link, IP and TCP headers of a frame.
func decode(link uint32, data []byte, origLen int, s *segment) int {
	var ether uint16 // 0: the version nibble says
	switch link {
	case linkEthernet:
		if len(data) < 14 {
			return decodeShort
		}
		ether = binary.BigEndian.Uint16(data[12:14])
		data = data[14:]
		origLen -= 14
		for ether == 0x8100 || ether == 0x88a8 || ether == 0x9100 { // VLAN tags
			if len(data) < 4 {
				return decodeShort
			}
			ether = binary.BigEndian.Uint16(data[2:4])
			data = data[4:]
			origLen -= 4
		}
	case linkSLL:
		if len(data) < 16 {
			return decodeShort
		}
		ether = binary.BigEndian.Uint16(data[14:16])
		data = data[16:]
		origLen -= 16
	case linkSLL2:
		if len(data) < 20 {
			return decodeShort
		}
		ether = binary.BigEndian.Uint16(data[0:2])
		data = data[20:]
		origLen -= 20
	case linkNull, linkLoop:
		if len(data) < 4 {
			return decodeShort
		}
		fam := binary.LittleEndian.Uint32(data[0:4])
		if link == linkLoop || fam > 0xffff {
			fam = binary.BigEndian.Uint32(data[0:4])
		}
		switch fam {
		case 2:
			ether = 0x0800
		case 24, 28, 30:
			ether = 0x86dd
		default:
			return decodeNotTCP
		}
		data = data[4:]
		origLen -= 4
	case linkRaw, linkRawAlt, linkRawAlt2, linkIPv4, linkIPv6:
	default:
		return decodeLink
	}
	if ether == 0 && len(data) > 0 {
		switch data[0] >> 4 {
		case 4:
			ether = 0x0800
		case 6:
			ether = 0x86dd
		}
	}
	var proto byte
	switch ether {
	case 0x0800:
		if len(data) < 20 || data[0]>>4 != 4 {
			return decodeShort
		}
		ihl := int(data[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(data[2:4]))
		if ihl < 20 || len(data) < ihl || total < ihl {
			return decodeShort
		}
		if frag := binary.BigEndian.Uint16(data[6:8]); frag&0x3fff != 0 { // MF or an offset
			return decodeFragment
		}
		proto = data[9]
		s.v6 = false
		s.src = v4InV6Prefix16(data[12:16])
		s.dst = v4InV6Prefix16(data[16:20])
		// Trim link-layer padding; note what the snapshot length cut.
		if total <= len(data) {
			data = data[:total]
			origLen = total
		} else if total > 0 {
			origLen = total
		}
		data = data[ihl:]
		origLen -= ihl
	case 0x86dd:
		if len(data) < 40 || data[0]>>4 != 6 {
			return decodeShort
		}
		plen := int(binary.BigEndian.Uint16(data[4:6]))
		proto = data[6]
		s.v6 = true
		copy(s.src[:], data[8:24])
		copy(s.dst[:], data[24:40])
		data = data[40:]
		if plen <= len(data) {
			data = data[:plen]
		}
		origLen = plen
		// Extension headers.
		for {
			switch proto {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if len(data) < 8 {
					return decodeShort
				}
				l := (int(data[1]) + 1) * 8
				if len(data) < l {
					return decodeShort
				}
				proto = data[0]
				data = data[l:]
				origLen -= l
				continue
			case 44:
				return decodeFragment
			}
			break
		}
	default:
		return decodeNotTCP
	}
	if proto != 6 {
		return decodeNotTCP
	}
	if len(data) < 20 {
		return decodeShort
	}
	off := int(data[12]>>4) * 4
	if off < 20 || len(data) < off {
		return decodeShort
	}
	s.sport = binary.BigEndian.Uint16(data[0:2])
	s.dport = binary.BigEndian.Uint16(data[2:4])
	s.seq = binary.BigEndian.Uint32(data[4:8])
	flags := data[13]
	s.fin, s.syn, s.rst, s.ack = flags&0x01 != 0, flags&0x02 != 0, flags&0x04 != 0, flags&0x10 != 0
	s.payload = data[off:]
	s.missing = max(origLen-off-len(s.payload), 0)
	return decodeOK
}

func v4InV6Prefix16(b []byte) [16]byte {
	var a [16]byte
	copy(a[:12], v4InV6Prefix[:])
	copy(a[12:], b)
	return a
}
