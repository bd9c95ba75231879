// Command replaygen writes the inputs of bench/replay.sh: one workload as an
// nplus1 recording and as a pcap of the same traffic (Ethernet, IPv4, TCP,
// as tcpdump -i lo writes it), so that the two analyses can be compared.
//
// The workload: CONNS connections, interleaved, each running requests of an
// ORM-like shape, an N+1: a list query (simple protocol) that returns 10
// orders (id, user_id, status; every request its own orders and users), then
// a lookup of each order's user by the user_id the list returned (extended
// protocol with a binary int8 parameter, as pgx sends them: Bind, Describe,
// Execute, Sync on a prepared statement), then an idle gap. Half the
// requests use a sqlcommenter traceparent. The
// recording holds the value evidence the proxy records with --evidence (the
// default): the digests of each lookup's parameter and of every result, as
// the tracker computes them from the pcap's bytes.
//
//	go run ./bench/replaygen -statements 1000000 -out DIR
package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/nplus1/nplus1/internal/valuekey"
	"github.com/nplus1/nplus1/pgwire"
	"github.com/nplus1/nplus1/replay/recording"
)

func main() {
	n := flag.Int("statements", 1000000, "statements to generate")
	conns := flag.Int("conns", 50, "connections, interleaved")
	out := flag.String("out", ".", "directory for workload.jsonl and workload.pcap")
	flag.Parse()
	if err := generate(*n, *conns, *out); err != nil {
		fmt.Fprintln(os.Stderr, "replaygen:", err)
		os.Exit(1)
	}
}

const (
	listSQL   = "SELECT id, user_id, status FROM orders WHERE status = 'open' ORDER BY id LIMIT 10"
	lookupSQL = "SELECT name, email FROM users WHERE id = $1"
	perReq    = 11
)

type conn struct {
	info       *pgwire.ConnInfo
	port       uint16
	cseq, sseq uint32
	prepared   bool
	started    bool
}

type gen struct {
	rec *recording.Writer
	pw  *pcapgo.Writer
	buf gopacket.SerializeBuffer
	at  time.Time

	// The lookups' result digests, the same for every request (read only).
	lookupResult *pgwire.ResultKeys
}

// order is one row of a request's list.
type order struct{ id, userID int64 }

// ordersOf are request req's n orders: ids of its own, and users spread
// over a million so that requests share few.
func ordersOf(req, n int) []order {
	out := make([]order, n)
	for i := range out {
		out[i] = order{id: int64(req*n + i + 1), userID: int64((req*7919+i*104729)%1000000 + 1)}
	}
	return out
}

// listKeys are the digests of rowsOf(orders): text format, as a simple
// query returns them.
func listKeys(orders []order) *pgwire.ResultKeys {
	keys := [][]valuekey.Key{make([]valuekey.Key, len(orders)), make([]valuekey.Key, len(orders)), make([]valuekey.Key, len(orders))}
	for i, o := range orders {
		keys[0][i] = valuekey.Text(fmt.Append(nil, o.id))
		keys[1][i] = valuekey.Text(fmt.Append(nil, o.userID))
		keys[2][i] = valuekey.Text([]byte("open"))
	}
	return pgwire.NewResultKeys([]string{"id", "user_id", "status"}, keys, false)
}

func generate(n, nconns int, dir string) error {
	rf, err := os.Create(filepath.Join(dir, "workload.jsonl"))
	if err != nil {
		return err
	}
	defer rf.Close()
	pf, err := os.Create(filepath.Join(dir, "workload.pcap"))
	if err != nil {
		return err
	}
	defer pf.Close()
	pbw := bufio.NewWriterSize(pf, 1<<20)
	g := &gen{rec: recording.NewWriter(rf, recording.WriterOptions{}), pw: pcapgo.NewWriterNanos(pbw), buf: gopacket.NewSerializeBuffer(),
		at:           time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC),
		lookupResult: pgwire.NewResultKeys([]string{"name"}, [][]valuekey.Key{{valuekey.Text([]byte("user name"))}}, false)}
	if err := g.pw.WriteFileHeader(262144, layers.LinkTypeEthernet); err != nil {
		return err
	}
	cs := make([]*conn, nconns)
	for i := range cs {
		cs[i] = &conn{info: &pgwire.ConnInfo{ID: uint64(i + 1), ClientAddr: "127.0.0.1", User: "shop", Database: "shop", ApplicationName: "bench"},
			port: uint16(40000 + i), cseq: 1000, sseq: 90000}
	}
	for done, req := 0, 0; done < n; req++ {
		c := cs[req%nconns]
		if !c.started {
			if err := g.open(c); err != nil {
				return err
			}
		}
		list := listSQL
		if req%2 == 1 {
			list += fmt.Sprintf(" /*traceparent='00-%032x-%016x-01'*/", req, req)
		}
		orders := ordersOf(req, perReq-1)
		if err := g.simple(c, list, orders); err != nil {
			return err
		}
		for i := 0; i < perReq-1 && done+1+i < n; i++ {
			if err := g.lookup(c, orders[i].userID); err != nil {
				return err
			}
		}
		done += perReq
		g.at = g.at.Add(time.Millisecond) // the next request, on the next connection
	}
	for _, c := range cs {
		if c.started {
			if err := g.segment(c, true, encodeFE(&pgproto3.Terminate{}), false, true); err != nil {
				return err
			}
			if err := g.segment(c, false, nil, false, true); err != nil {
				return err
			}
		}
	}
	if err := g.rec.Close(); err != nil {
		return err
	}
	return pbw.Flush()
}

func encodeFE(msgs ...pgproto3.FrontendMessage) []byte {
	var b []byte
	for _, m := range msgs {
		b, _ = m.Encode(b)
	}
	return b
}

func encodeBE(msgs ...pgproto3.BackendMessage) []byte {
	var b []byte
	for _, m := range msgs {
		b, _ = m.Encode(b)
	}
	return b
}

func (g *gen) tick(d time.Duration) time.Time {
	g.at = g.at.Add(d)
	return g.at
}

// open writes the handshake, startup and authentication of c.
func (g *gen) open(c *conn) error {
	c.started = true
	if err := g.segment(c, true, nil, true, false); err != nil {
		return err
	}
	if err := g.segment(c, false, nil, true, false); err != nil {
		return err
	}
	startup := []byte{0, 0, 0, 0, 0, 3, 0, 0}
	for _, kv := range [][2]string{{"user", c.info.User}, {"database", c.info.Database}, {"application_name", c.info.ApplicationName}} {
		startup = append(append(append(append(startup, kv[0]...), 0), kv[1]...), 0)
	}
	startup = append(startup, 0)
	binary.BigEndian.PutUint32(startup, uint32(len(startup)))
	if err := g.segment(c, true, startup, false, false); err != nil {
		return err
	}
	return g.segment(c, false, encodeBE(&pgproto3.AuthenticationOk{}, &pgproto3.ParameterStatus{Name: "application_name", Value: c.info.ApplicationName},
		&pgproto3.BackendKeyData{ProcessID: uint32(c.port), SecretKey: []byte{1, 2, 3, 4}}, &pgproto3.ReadyForQuery{TxStatus: 'I'}), false, false)
}

func rowsOf(orders []order) []pgproto3.BackendMessage {
	out := []pgproto3.BackendMessage{&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		{Name: []byte("id"), DataTypeOID: 20, DataTypeSize: 8},
		{Name: []byte("user_id"), DataTypeOID: 20, DataTypeSize: 8},
		{Name: []byte("status"), DataTypeOID: 25, DataTypeSize: -1}}}}
	for _, o := range orders {
		out = append(out, &pgproto3.DataRow{Values: [][]byte{fmt.Append(nil, o.id), fmt.Append(nil, o.userID), []byte("open")}})
	}
	return out
}

func (g *gen) simple(c *conn, sql string, orders []order) error {
	rows := len(orders)
	start := g.tick(20 * time.Microsecond)
	if err := g.segment(c, true, encodeFE(&pgproto3.Query{String: sql}), false, false); err != nil {
		return err
	}
	end := g.tick(150 * time.Microsecond)
	reply := encodeBE(append(rowsOf(orders), &pgproto3.CommandComplete{CommandTag: []byte(fmt.Sprintf("SELECT %d", rows))}, &pgproto3.ReadyForQuery{TxStatus: 'I'})...)
	if err := g.segment(c, false, reply, false, false); err != nil {
		return err
	}
	return g.rec.Write(&pgwire.Execution{Conn: c.info, Start: start, End: end, SQL: sql, Protocol: "simple", Command: "SELECT", Rows: int64(rows),
		Result: listKeys(orders)})
}

func (g *gen) lookup(c *conn, id int64) error {
	param := binary.BigEndian.AppendUint64(nil, uint64(id))
	var fe []byte
	if !c.prepared {
		fe = encodeFE(&pgproto3.Parse{Name: "stmtcache_1", Query: lookupSQL}, &pgproto3.Describe{ObjectType: 'S', Name: "stmtcache_1"}, &pgproto3.Sync{})
		g.tick(10 * time.Microsecond)
		if err := g.segment(c, true, fe, false, false); err != nil {
			return err
		}
		g.tick(50 * time.Microsecond)
		if err := g.segment(c, false, encodeBE(&pgproto3.ParseComplete{}, &pgproto3.ParameterDescription{ParameterOIDs: []uint32{20}},
			&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("name"), DataTypeOID: 25}}}, &pgproto3.ReadyForQuery{TxStatus: 'I'}), false, false); err != nil {
			return err
		}
		c.prepared = true
	}
	fe = encodeFE(&pgproto3.Bind{PreparedStatement: "stmtcache_1", ParameterFormatCodes: []int16{1}, Parameters: [][]byte{param}, ResultFormatCodes: []int16{0}},
		&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{})
	start := g.tick(30 * time.Microsecond)
	if err := g.segment(c, true, fe, false, false); err != nil {
		return err
	}
	end := g.tick(80 * time.Microsecond)
	reply := encodeBE(&pgproto3.BindComplete{}, &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("name"), DataTypeOID: 25}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("user name")}}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := g.segment(c, false, reply, false, false); err != nil {
		return err
	}
	// The client's ACK of the reply, as on a real loopback capture.
	if err := g.segment(c, true, nil, false, false); err != nil {
		return err
	}
	params := [][]byte{param}
	return g.rec.Write(&pgwire.Execution{Conn: c.info, Start: start, End: end, SQL: lookupSQL, Protocol: "extended", Prepared: "stmtcache_1",
		Params: params, ParamFormats: []int16{1}, ParamsHash: pgwire.HashParams([]int16{1}, params), NumParams: 1, Command: "SELECT", Rows: 1,
		ParamKeys: []valuekey.Key{valuekey.Binary(param, valuekey.OIDInt8)}, Result: g.lookupResult})
}

var (
	loopMAC = make([]byte, 6)
	lo      = []byte{127, 0, 0, 1}
)

// segment writes one TCP segment of c.
func (g *gen) segment(c *conn, toServer bool, payload []byte, syn, fin bool) error {
	tcp := &layers.TCP{Window: 65535, ACK: !syn || !toServer, SYN: syn, FIN: fin, PSH: len(payload) > 0}
	if toServer {
		tcp.SrcPort, tcp.DstPort, tcp.Seq, tcp.Ack = layers.TCPPort(c.port), 5432, c.cseq, c.sseq
		c.cseq += uint32(len(payload))
		if syn || fin {
			c.cseq++
		}
	} else {
		tcp.SrcPort, tcp.DstPort, tcp.Seq, tcp.Ack = 5432, layers.TCPPort(c.port), c.sseq, c.cseq
		c.sseq += uint32(len(payload))
		if syn || fin {
			c.sseq++
		}
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: lo, DstIP: lo}
	tcp.SetNetworkLayerForChecksum(ip)
	if err := gopacket.SerializeLayers(g.buf, gopacket.SerializeOptions{FixLengths: true},
		&layers.Ethernet{SrcMAC: loopMAC, DstMAC: loopMAC, EthernetType: layers.EthernetTypeIPv4}, ip, tcp, gopacket.Payload(payload)); err != nil {
		return err
	}
	data := g.buf.Bytes()
	return g.pw.WritePacket(gopacket.CaptureInfo{Timestamp: g.at, CaptureLength: len(data), Length: len(data)}, data)
}
