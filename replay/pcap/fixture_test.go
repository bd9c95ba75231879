package pcap

import (
	"bytes"
	"encoding/binary"
	"flag"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/jackc/pgx/v5/pgproto3"
)

var update = flag.Bool("update", false, "rewrite the capture fixtures and golden files in testdata")

// A convo is one TCP connection's packets, built message by message. The
// fixtures are made from convos by writePcap, with gopacket's serializers
// and pcapgo's writers: an implementation independent of the reader.
type convo struct {
	client, server net.IP
	cport, sport   uint16
	cseq, sseq     uint32
	at             time.Time
	pkts           []cpkt
}

type cpkt struct {
	ts       time.Time
	toServer bool
	seq, ack uint32
	syn, fin bool
	ackFlag  bool
	payload  []byte
}

var fixtureStart = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

func newConvo(client, server string, cport uint16) *convo {
	return &convo{client: net.ParseIP(client), server: net.ParseIP(server), cport: cport, sport: 5432,
		cseq: 1000, sseq: 500000, at: fixtureStart}
}

func (c *convo) tick(d time.Duration) { c.at = c.at.Add(d) }

func (c *convo) handshake() {
	c.pkts = append(c.pkts, cpkt{ts: c.at, toServer: true, seq: c.cseq, syn: true})
	c.cseq++
	c.tick(20 * time.Microsecond)
	c.pkts = append(c.pkts, cpkt{ts: c.at, seq: c.sseq, ack: c.cseq, syn: true, ackFlag: true})
	c.sseq++
	c.tick(20 * time.Microsecond)
	c.pkts = append(c.pkts, cpkt{ts: c.at, toServer: true, seq: c.cseq, ack: c.sseq, ackFlag: true})
	c.tick(50 * time.Microsecond)
}

// send adds one segment of data in one direction.
func (c *convo) send(toServer bool, data []byte) {
	p := cpkt{ts: c.at, toServer: toServer, ackFlag: true, payload: data}
	if toServer {
		p.seq, p.ack = c.cseq, c.sseq
		c.cseq += uint32(len(data))
	} else {
		p.seq, p.ack = c.sseq, c.cseq
		c.sseq += uint32(len(data))
	}
	c.pkts = append(c.pkts, p)
	c.tick(100 * time.Microsecond)
}

func (c *convo) fe(msgs ...pgproto3.FrontendMessage) { c.send(true, encode(msgs...)) }
func (c *convo) be(msgs ...pgproto3.BackendMessage)  { c.send(false, encodeBE(msgs...)) }

func (c *convo) finish() {
	c.pkts = append(c.pkts, cpkt{ts: c.at, toServer: true, seq: c.cseq, ack: c.sseq, fin: true, ackFlag: true})
	c.cseq++
	c.tick(20 * time.Microsecond)
	c.pkts = append(c.pkts, cpkt{ts: c.at, seq: c.sseq, ack: c.cseq, fin: true, ackFlag: true})
	c.sseq++
}

func encode(msgs ...pgproto3.FrontendMessage) []byte {
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			panic(err)
		}
	}
	return b
}

func encodeBE(msgs ...pgproto3.BackendMessage) []byte {
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			panic(err)
		}
	}
	return b
}

// startup runs the startup and a trust authentication.
func (c *convo) startup(user, db, app string) {
	// By hand: pgproto3 writes the parameters in map order, and the
	// fixtures must be byte for byte the same every time.
	pkt := []byte{0, 0, 0, 0, 0, 3, 0, 0}
	for _, kv := range [][2]string{{"user", user}, {"database", db}, {"application_name", app}} {
		pkt = append(append(append(append(pkt, kv[0]...), 0), kv[1]...), 0)
	}
	pkt = append(pkt, 0)
	binary.BigEndian.PutUint32(pkt, uint32(len(pkt)))
	c.send(true, pkt)
	c.be(&pgproto3.AuthenticationOk{}, &pgproto3.ParameterStatus{Name: "application_name", Value: app},
		&pgproto3.ParameterStatus{Name: "server_version", Value: "15.0"},
		&pgproto3.BackendKeyData{ProcessID: 4711, SecretKey: []byte{0, 0, 0, 42}}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
}

func rows(n int) []pgproto3.BackendMessage {
	out := []pgproto3.BackendMessage{&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("id"), DataTypeOID: 20, DataTypeSize: 8, Format: 0}}}}
	for i := range n {
		out = append(out, &pgproto3.DataRow{Values: [][]byte{[]byte(string(rune('0' + i%10)))}})
	}
	return out
}

// nPlusOne adds a source query returning n rows and n lookups by id, each
// with Parse/Bind/Describe/Execute/Sync as pgx sends them.
func (c *convo) nPlusOne(n int) {
	c.fe(&pgproto3.Query{String: "SELECT id, user_id FROM orders WHERE status = 'open' ORDER BY id LIMIT 20"})
	c.tick(300 * time.Microsecond)
	c.be(append(rows(n), &pgproto3.CommandComplete{CommandTag: []byte("SELECT " + itoa(n))}, &pgproto3.ReadyForQuery{TxStatus: 'I'})...)
	for i := range n {
		c.fe(&pgproto3.Parse{Query: "SELECT name, email FROM users WHERE id = $1"},
			&pgproto3.Bind{ParameterFormatCodes: []int16{1}, Parameters: [][]byte{binary.BigEndian.AppendUint64(nil, uint64(i+1))}},
			&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{})
		c.tick(200 * time.Microsecond)
		c.be(append([]pgproto3.BackendMessage{&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}}, append(rows(1),
			&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})...)...)
	}
}

func itoa(n int) string {
	return string(bytes.TrimLeft([]byte{byte('0' + n/100%10), byte('0' + n/10%10), byte('0' + n%10)}, "0"))
}

// Link layers the fixtures are written with.
const (
	fixEthernet = iota
	fixSLL
	fixSLL2
)

// frame serializes one packet of c with the given link layer.
func (c *convo) frame(t testing.TB, p cpkt, link int) []byte {
	src, dst, sp, dp := c.server, c.client, c.sport, c.cport
	if p.toServer {
		src, dst, sp, dp = c.client, c.server, c.cport, c.sport
	}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sp), DstPort: layers.TCPPort(dp), Seq: p.seq, Ack: p.ack,
		SYN: p.syn, FIN: p.fin, ACK: p.ackFlag, PSH: len(p.payload) > 0, Window: 65535}
	var ip gopacket.SerializableLayer
	var ether layers.EthernetType
	if v4 := src.To4(); v4 != nil {
		ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: v4, DstIP: dst.To4(), Flags: layers.IPv4DontFragment}
		tcp.SetNetworkLayerForChecksum(ip4)
		ip, ether = ip4, layers.EthernetTypeIPv4
	} else {
		ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
		tcp.SetNetworkLayerForChecksum(ip6)
		ip, ether = ip6, layers.EthernetTypeIPv6
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	ls := []gopacket.SerializableLayer{ip, tcp, gopacket.Payload(p.payload)}
	if link == fixEthernet {
		ls = append([]gopacket.SerializableLayer{&layers.Ethernet{SrcMAC: make(net.HardwareAddr, 6), DstMAC: make(net.HardwareAddr, 6), EthernetType: ether}}, ls...)
	}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		t.Fatal(err)
	}
	out := buf.Bytes()
	switch link {
	case fixSLL: // 16 bytes: packet type, ARPHRD, address length, address, protocol
		h := make([]byte, 16)
		binary.BigEndian.PutUint16(h[0:2], 0) // to us
		binary.BigEndian.PutUint16(h[2:4], 772)
		binary.BigEndian.PutUint16(h[4:6], 6)
		binary.BigEndian.PutUint16(h[14:16], uint16(ether))
		out = append(h, out...)
	case fixSLL2: // 20 bytes: protocol, reserved, ifindex, ARPHRD, type, address length, address
		h := make([]byte, 20)
		binary.BigEndian.PutUint16(h[0:2], uint16(ether))
		binary.BigEndian.PutUint32(h[4:8], 1)
		binary.BigEndian.PutUint16(h[8:10], 772)
		h[11] = 6
		out = append(h, out...)
	}
	return append([]byte(nil), out...)
}

// gopacket v1's LinkType is a byte, so SLL2 (276) files are written as SLL
// and their header patched.
var fixLinkTypes = map[int]layers.LinkType{fixEthernet: layers.LinkTypeEthernet, fixSLL: layers.LinkTypeLinuxSLL, fixSLL2: layers.LinkTypeLinuxSLL}

// writeCapture writes the packets of several convos, merged by time
// (stable), as pcap or pcapng.
func writeCapture(t testing.TB, path string, ng bool, link int, pkts []framed) {
	var buf bytes.Buffer
	lt := fixLinkTypes[link]
	if ng {
		w, err := pcapgo.NewNgWriter(&buf, lt)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts {
			if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: p.ts, CaptureLength: len(p.data), Length: len(p.data)}, p.data); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	} else {
		w := pcapgo.NewWriter(&buf)
		if err := w.WriteFileHeader(65535, lt); err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts {
			if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: p.ts, CaptureLength: len(p.data), Length: len(p.data)}, p.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	out := buf.Bytes()
	if link == fixSLL2 {
		if ng {
			t.Fatal("SLL2 fixtures are pcap files")
		}
		binary.LittleEndian.PutUint32(out[20:24], linkSLL2)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

type framed struct {
	ts   time.Time
	data []byte
}

func (c *convo) frames(t testing.TB, link int) []framed {
	out := make([]framed, len(c.pkts))
	for i, p := range c.pkts {
		out[i] = framed{p.ts, c.frame(t, p, link)}
	}
	return out
}

// fixtures builds every committed capture: name → (pcapng?, link, frames).
type fixture struct {
	name string
	ng   bool
	link int
	pkts func(t testing.TB) []framed
}

func basicConvo(client string, port uint16) *convo {
	c := newConvo(client, "127.0.0.1", port)
	if net.ParseIP(client).To4() == nil {
		c.server = net.ParseIP("::1")
	}
	c.handshake()
	c.startup("shop", "shopdb", "shop-api")
	c.nPlusOne(6)
	c.fe(&pgproto3.Terminate{})
	c.finish()
	return c
}

func fixtures() []fixture {
	return []fixture{
		{"basic", false, fixEthernet, func(t testing.TB) []framed { return basicConvo("127.0.0.1", 40001).frames(t, fixEthernet) }},
		{"ipv6", true, fixEthernet, func(t testing.TB) []framed { return basicConvo("::1", 40002).frames(t, fixEthernet) }},
		{"cooked", false, fixSLL, func(t testing.TB) []framed { return basicConvo("10.1.2.3", 40003).frames(t, fixSLL) }},
		{"cooked2", false, fixSLL2, func(t testing.TB) []framed { return basicConvo("10.1.2.4", 40004).frames(t, fixSLL2) }},
		{"midstream", false, fixEthernet, func(t testing.TB) []framed {
			// The capture starts inside the source query's reply (part of
			// its DataRows), so neither SYN nor startup is seen.
			c := newConvo("127.0.0.1", "127.0.0.1", 40005)
			c.handshake()
			c.startup("shop", "shopdb", "shop-api")
			c.fe(&pgproto3.Query{String: "SELECT id, user_id FROM orders WHERE status = 'open' ORDER BY id LIMIT 20"})
			reply := encodeBE(append(rows(6), &pgproto3.CommandComplete{CommandTag: []byte("SELECT 6")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})...)
			c.send(false, reply[:23])
			cut := len(c.pkts)
			c.send(false, reply[23:])
			for i := range 6 {
				c.fe(&pgproto3.Parse{Query: "SELECT name, email FROM users WHERE id = $1"},
					&pgproto3.Bind{Parameters: [][]byte{[]byte(itoa(i + 1))}}, &pgproto3.Execute{}, &pgproto3.Sync{})
				c.be(append([]pgproto3.BackendMessage{&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}}, append(rows(1)[1:],
					&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})...)...)
			}
			c.finish()
			return c.frames(t, fixEthernet)[cut:]
		}},
		{"reordered", false, fixEthernet, func(t testing.TB) []framed {
			// A long query in three segments, captured 3, 1, 2, with 1
			// retransmitted; its reply in two segments, captured 2, 1.
			c := newConvo("127.0.0.1", "127.0.0.1", 40006)
			c.handshake()
			c.startup("shop", "shopdb", "shop-api")
			q := encode(&pgproto3.Query{String: "SELECT id, name, price_cents FROM products WHERE name LIKE 'product %' AND price_cents > 100 ORDER BY id"})
			first := len(c.pkts)
			c.send(true, q[:10])
			c.send(true, q[10:40])
			c.send(true, q[40:])
			reply := encodeBE(append(rows(3), &pgproto3.CommandComplete{CommandTag: []byte("SELECT 3")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})...)
			c.send(false, reply[:30])
			c.send(false, reply[30:])
			c.fe(&pgproto3.Query{String: "SELECT 1"})
			c.be(append(rows(1), &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})...)
			c.finish()
			f := c.frames(t, fixEthernet)
			s1, s2, s3, r1, r2 := f[first], f[first+1], f[first+2], f[first+3], f[first+4]
			out := append([]framed(nil), f[:first]...)
			out = append(out, s3, s1, s1, s2, r2, r1)
			return append(out, f[first+5:]...)
		}},
		{"tls", false, fixEthernet, func(t testing.TB) []framed {
			// One connection negotiates TLS with SSLRequest, one uses
			// direct TLS, one was already encrypted when the capture began.
			a := newConvo("127.0.0.1", "127.0.0.1", 40007)
			a.handshake()
			a.send(true, []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f})
			a.send(false, []byte{'S'})
			a.send(true, tlsRecord(0x16, 200))
			a.send(false, tlsRecord(0x16, 1200))
			a.send(true, tlsRecord(0x17, 90))
			a.send(false, tlsRecord(0x17, 300))
			a.finish()
			b := newConvo("127.0.0.1", "127.0.0.1", 40008)
			b.handshake()
			b.send(true, tlsRecord(0x16, 250))
			b.send(false, tlsRecord(0x16, 1300))
			b.finish()
			m := newConvo("127.0.0.1", "127.0.0.1", 40009)
			for range 3 {
				m.send(true, tlsRecord(0x17, 120))
				m.send(false, tlsRecord(0x17, 700))
			}
			out := append(a.frames(t, fixEthernet), b.frames(t, fixEthernet)...)
			return append(out, m.frames(t, fixEthernet)...)
		}},
	}
}

// tlsRecord is a TLS record header and n bytes that look random.
func tlsRecord(typ byte, n int) []byte {
	b := []byte{typ, 3, 3, byte(n >> 8), byte(n)}
	x := uint32(2463534242)
	for range n {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b = append(b, byte(x))
	}
	return b
}

func fixturePath(f fixture) string {
	ext := ".pcap"
	if f.ng {
		ext = ".pcapng"
	}
	return filepath.Join("testdata", f.name+ext)
}

// TestFixturesUpToDate checks that the committed captures are what the
// builders above make; with -update it rewrites them.
func TestFixturesUpToDate(t *testing.T) {
	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range fixtures() {
		path := fixturePath(f)
		if *update {
			writeCapture(t, path, f.ng, f.link, f.pkts(t))
			continue
		}
		tmp := filepath.Join(t.TempDir(), filepath.Base(path))
		writeCapture(t, tmp, f.ng, f.link, f.pkts(t))
		want, err := os.ReadFile(tmp)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test -run TestFixturesUpToDate -update ./replay/pcap/ writes it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what its builder makes; rerun with -update", path)
		}
	}
}
