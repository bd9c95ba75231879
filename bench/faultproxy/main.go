// Command faultproxy is the fault injector and the flood generator of
// bench/soak.sh.
//
//	faultproxy relay -listen 127.0.0.1:7000 -target 127.0.0.1:5432 -app soak-fault \
//	    -cut-every 5s -reset-every 10s -stall-every 10s -stall-for 2s -refuse 0.05 -stats FILE
//	faultproxy flood -addr 127.0.0.1:6432 -n 200 -mode silent|startup -hold 10s
//
// relay is a TCP forwarder put between nplus1 and PostgreSQL. It reads the
// first message of each connection (the startup packet nplus1 forwards
// unchanged) and injects faults only into sessions whose application_name
// starts with -app (every session when -app is empty), so that the other
// sessions of a soak show whether a fault stays within its own session.
// Faults, each at random times (exponentially distributed, with the mean
// given) on a session picked at random among the live targeted ones:
//
//   - cut: the next chunk read in one direction, picked at random, is
//     delivered only half way, then both sides are closed (FIN): a stream
//     cut mid-message; a session that sends nothing that way for 300 ms is
//     closed as it is.
//   - reset: both sides are closed with SO_LINGER 0 (RST).
//   - stall: one direction, picked at random, stops relaying for 0.5x-1.5x
//     -stall-for; the data waits, nothing is lost.
//   - refuse: a fraction of the new targeted connections is reset before
//     PostgreSQL is dialed (a TCP-level refusal cannot be aimed at one
//     application, so the connection is accepted, its startup packet read,
//     and then reset).
//
// The counters (connections, faults by kind) are written to -stats every
// second and on exit, one "name value" per line; each fault is logged on
// stderr.
//
// flood opens -n connections at once to -addr and then keeps silent: with
// -mode silent it sends nothing, with -mode startup it sends a startup packet
// (user -user, database -database, application_name -app) and then nothing,
// so that a server asking for a password waits for an answer that never
// comes. It reads until the other side closes each connection or -hold has
// passed since it was opened, and prints one line of counts: how each
// connection ended (the SQLSTATE of a FATAL it was sent, a close without a
// word, a reset) and how many were still open at -hold (not dropped), with
// the fastest and slowest drop.
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	log.SetPrefix("faultproxy: ")
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "relay":
		err = relayMain(os.Args[2:])
	case "flood":
		err = floodMain(os.Args[2:])
	case "-h", "-help", "--help", "help":
		usage()
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultproxy:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: faultproxy relay -listen ADDR -target ADDR [fault flags]\n       faultproxy flood -addr ADDR -n N -mode silent|startup\nrun faultproxy relay -h or faultproxy flood -h for the flags")
	os.Exit(2)
}

// ---------------------------------------------------------------- relay

// Protocol codes of the first message of a PostgreSQL connection.
const (
	protocol30    = 3 << 16
	protocol32    = 3<<16 | 2
	cancelRequest = 80877102
	maxStartup    = 10000 // PostgreSQL's own limit on a startup packet
)

type counters struct {
	accepted, targeted, active, dialErrors   atomic.Int64
	cuts, cutsMid, resets, stalls, refused   atomic.Int64
	bytesClientToServer, bytesServerToClient atomic.Int64
}

type relay struct {
	target    string
	app       string
	refuse    float64
	stallFor  time.Duration
	stats     counters
	mu        sync.Mutex
	sessions  map[uint64]*session // live targeted sessions
	nextID    atomic.Uint64
	rngMu     sync.Mutex
	rng       *rand.Rand
	statsFile string
}

type session struct {
	id             uint64
	app            string
	client, server *net.TCPConn
	r              *relay
	mu             sync.Mutex
	stallUntil     [2]time.Time // 0: client to server, 1: server to client
	cutDir         atomic.Int32 // a cut is pending in direction cutDir-1
	done           chan struct{}
	closeOnce      sync.Once
}

func relayMain(args []string) error {
	fs := flag.NewFlagSet("relay", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	target := fs.String("target", "", "PostgreSQL host:port to relay to (required)")
	app := fs.String("app", "", "inject faults only into sessions whose application_name starts with this; empty: every session")
	cutEvery := fs.Duration("cut-every", 0, "mean time between cuts (close mid-stream, FIN); 0: none")
	resetEvery := fs.Duration("reset-every", 0, "mean time between resets (RST); 0: none")
	stallEvery := fs.Duration("stall-every", 0, "mean time between stalls of one direction; 0: none")
	stallFor := fs.Duration("stall-for", 2*time.Second, "mean length of a stall (each is 0.5x-1.5x this)")
	refuse := fs.Float64("refuse", 0, "fraction (0-1) of new targeted connections reset before PostgreSQL is dialed")
	statsFile := fs.String("stats", "", "write the counters to this file every second and on exit")
	seed := fs.Uint64("seed", 0, "random seed; 0: from the clock")
	_ = fs.Parse(args)
	if *target == "" {
		return errors.New("relay: -target is required")
	}
	if *refuse < 0 || *refuse > 1 {
		return errors.New("relay: -refuse must be within 0..1")
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	r := &relay{
		target:    *target,
		app:       *app,
		refuse:    *refuse,
		stallFor:  *stallFor,
		sessions:  make(map[uint64]*session),
		rng:       rand.New(rand.NewPCG(*seed, *seed^0x9e3779b97f4a7c15)),
		statsFile: *statsFile,
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	log.Printf("relaying %s -> %s; faults for application_name %q*: cut every %s, reset every %s, stall every %s for %s, refuse %.3f; seed %d",
		ln.Addr(), r.target, r.app, *cutEvery, *resetEvery, *stallEvery, *stallFor, *refuse, *seed)

	r.schedule(*cutEvery, r.cut)
	r.schedule(*resetEvery, r.reset)
	r.schedule(*stallEvery, r.stall)
	go func() {
		for range time.Tick(time.Second) {
			r.writeStats()
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		r.writeStats()
		os.Exit(0)
	}()

	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				log.Printf("accept: %v", err)
				time.Sleep(100 * time.Millisecond)
				continue
			}
			return err
		}
		r.stats.accepted.Add(1)
		go r.handle(c.(*net.TCPConn))
	}
}

func (r *relay) float() float64 {
	r.rngMu.Lock()
	defer r.rngMu.Unlock()
	return r.rng.Float64()
}

func (r *relay) intN(n int) int {
	r.rngMu.Lock()
	defer r.rngMu.Unlock()
	return r.rng.IntN(n)
}

// schedule runs fn on a random live targeted session at exponentially
// distributed intervals of the given mean; none when mean is 0.
func (r *relay) schedule(mean time.Duration, fn func(*session)) {
	if mean <= 0 {
		return
	}
	go func() {
		for {
			u := r.float()
			wait := time.Duration(-math.Log(1-u) * float64(mean))
			time.Sleep(wait)
			if s := r.pick(); s != nil {
				fn(s)
			}
		}
	}()
}

func (r *relay) pick() *session {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sessions) == 0 {
		return nil
	}
	i := r.intN(len(r.sessions))
	for _, s := range r.sessions {
		if i == 0 {
			return s
		}
		i--
	}
	return nil
}

func (r *relay) cut(s *session) {
	if !s.cutDir.CompareAndSwap(0, int32(r.intN(2))+1) {
		return
	}
	r.stats.cuts.Add(1)
	time.AfterFunc(300*time.Millisecond, func() {
		select {
		case <-s.done:
		default:
			log.Printf("cut session %d (%s): idle, closed", s.id, s.app)
			s.close(false)
		}
	})
}

func (r *relay) reset(s *session) {
	r.stats.resets.Add(1)
	log.Printf("reset session %d (%s)", s.id, s.app)
	s.close(true)
}

func (r *relay) stall(s *session) {
	dir := r.intN(2)
	d := time.Duration((0.5 + r.float()) * float64(r.stallFor))
	s.mu.Lock()
	s.stallUntil[dir] = time.Now().Add(d)
	s.mu.Unlock()
	r.stats.stalls.Add(1)
	log.Printf("stall session %d (%s): %s for %s", s.id, s.app, [2]string{"client to server", "server to client"}[dir], d.Round(time.Millisecond))
}

func (r *relay) handle(client *net.TCPConn) {
	// The first message: nplus1 forwards the client's startup packet
	// unchanged (and CancelRequests on connections of their own).
	_ = client.SetReadDeadline(time.Now().Add(30 * time.Second))
	first, app, err := readFirst(client)
	_ = client.SetReadDeadline(time.Time{})
	if err != nil && len(first) == 0 {
		client.Close()
		return
	}
	targeted := r.app == "" || (app != "" && strings.HasPrefix(app, r.app))
	if targeted {
		r.stats.targeted.Add(1)
		if r.refuse > 0 && r.float() < r.refuse {
			r.stats.refused.Add(1)
			log.Printf("refused a connection (%s)", app)
			_ = client.SetLinger(0)
			client.Close()
			return
		}
	}
	sc, err := net.DialTimeout("tcp", r.target, 5*time.Second)
	if err != nil {
		r.stats.dialErrors.Add(1)
		log.Printf("dial %s: %v", r.target, err)
		client.Close()
		return
	}
	s := &session{
		id:     r.nextID.Add(1),
		app:    app,
		client: client,
		server: sc.(*net.TCPConn),
		r:      r,
		done:   make(chan struct{}),
	}
	r.stats.active.Add(1)
	defer r.stats.active.Add(-1)
	if _, err := s.server.Write(first); err != nil {
		s.close(false)
		return
	}
	r.stats.bytesClientToServer.Add(int64(len(first)))
	if targeted {
		r.mu.Lock()
		r.sessions[s.id] = s
		r.mu.Unlock()
		defer func() {
			r.mu.Lock()
			delete(r.sessions, s.id)
			r.mu.Unlock()
		}()
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.pump(0, s.client, s.server) }()
	go func() { defer wg.Done(); s.pump(1, s.server, s.client) }()
	wg.Wait()
}

// readFirst reads the first message of a connection: a length-prefixed
// packet whose code says what it is. It returns the bytes read, and the
// application_name when it is a startup packet that has one.
func readFirst(c net.Conn) ([]byte, string, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return nil, "", err
	}
	n := int(binary.BigEndian.Uint32(hdr[:4]))
	code := binary.BigEndian.Uint32(hdr[4:])
	if n < 8 || n > maxStartup {
		return hdr[:], "", nil // not ours to judge: relayed as it is
	}
	buf := make([]byte, n)
	copy(buf, hdr[:])
	if _, err := io.ReadFull(c, buf[8:]); err != nil {
		return buf[:8], "", err
	}
	if code != protocol30 && code != protocol32 {
		return buf, "", nil
	}
	// key\0value\0 ... \0
	parts := strings.Split(string(buf[8:]), "\x00")
	for i := 0; i+1 < len(parts); i += 2 {
		if parts[i] == "application_name" {
			return buf, parts[i+1], nil
		}
	}
	return buf, "", nil
}

func (s *session) close(reset bool) {
	s.closeOnce.Do(func() {
		if reset {
			_ = s.client.SetLinger(0)
			_ = s.server.SetLinger(0)
		}
		s.client.Close()
		s.server.Close()
		close(s.done)
	})
}

// waitStall holds a direction while it is stalled.
func (s *session) waitStall(dir int) {
	for {
		s.mu.Lock()
		until := s.stallUntil[dir]
		s.mu.Unlock()
		d := time.Until(until)
		if d <= 0 {
			return
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-s.done:
			t.Stop()
			return
		}
	}
}

func (s *session) pump(dir int, src, dst *net.TCPConn) {
	defer s.close(false)
	buf := make([]byte, 32<<10)
	counter := &s.r.stats.bytesClientToServer
	if dir == 1 {
		counter = &s.r.stats.bytesServerToClient
	}
	for {
		n, err := src.Read(buf)
		if n > 0 {
			s.waitStall(dir)
			if s.cutDir.Load() == int32(dir)+1 {
				half := n / 2
				if half > 0 {
					_, _ = dst.Write(buf[:half])
				}
				s.r.stats.cutsMid.Add(1)
				log.Printf("cut session %d (%s): %s after %d of %d bytes", s.id, s.app, [2]string{"client to server", "server to client"}[dir], half, n)
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			counter.Add(int64(n))
		}
		if err != nil {
			return
		}
	}
}

func (r *relay) writeStats() {
	if r.statsFile == "" {
		return
	}
	st := &r.stats
	var b strings.Builder
	for _, kv := range []struct {
		k string
		v int64
	}{
		{"accepted", st.accepted.Load()},
		{"targeted", st.targeted.Load()},
		{"active", st.active.Load()},
		{"dial_errors", st.dialErrors.Load()},
		{"cuts", st.cuts.Load()},
		{"cuts_mid", st.cutsMid.Load()},
		{"resets", st.resets.Load()},
		{"stalls", st.stalls.Load()},
		{"refused", st.refused.Load()},
		{"bytes_client_to_server", st.bytesClientToServer.Load()},
		{"bytes_server_to_client", st.bytesServerToClient.Load()},
	} {
		fmt.Fprintf(&b, "%s %d\n", kv.k, kv.v)
	}
	tmp := filepath.Join(filepath.Dir(r.statsFile), "."+filepath.Base(r.statsFile)+".tmp")
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		log.Printf("stats: %v", err)
		return
	}
	if err := os.Rename(tmp, r.statsFile); err != nil {
		log.Printf("stats: %v", err)
	}
}

// ---------------------------------------------------------------- flood

type floodResult struct {
	dialErr  bool
	outcome  string // fatal_SQLSTATE, closed, reset, not_dropped, error
	dropTime time.Duration
	authReq  bool // the server asked this connection to authenticate
}

func floodMain(args []string) error {
	fs := flag.NewFlagSet("flood", flag.ExitOnError)
	addr := fs.String("addr", "", "host:port to flood (required)")
	n := fs.Int("n", 200, "connections, opened at once")
	mode := fs.String("mode", "silent", "silent: send nothing; startup: send a startup packet, then nothing")
	user := fs.String("user", "soak_flood", "user in the startup packet")
	database := fs.String("database", "postgres", "database in the startup packet")
	app := fs.String("app", "soak-flood", "application_name in the startup packet")
	hold := fs.Duration("hold", 10*time.Second, "give up waiting for the other side to drop a connection after this long; it then counts as not dropped")
	dialTimeout := fs.Duration("dial-timeout", 5*time.Second, "TCP connect timeout")
	_ = fs.Parse(args)
	if *addr == "" {
		return errors.New("flood: -addr is required")
	}
	if *mode != "silent" && *mode != "startup" {
		return errors.New("flood: -mode must be silent or startup")
	}
	if *n < 1 {
		return errors.New("flood: -n must be at least 1")
	}
	var startup []byte
	if *mode == "startup" {
		startup = startupPacket(map[string]string{"user": *user, "database": *database, "application_name": *app})
	}
	results := make([]floodResult, *n)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = floodOne(*addr, startup, *hold, *dialTimeout)
		}()
	}
	wg.Wait()

	counts := map[string]int{}
	dialErrors, connected, authReqs := 0, 0, 0
	var drops []time.Duration
	for _, r := range results {
		if r.dialErr {
			dialErrors++
			continue
		}
		connected++
		counts[r.outcome]++
		if r.authReq {
			authReqs++
		}
		if r.outcome != "not_dropped" {
			drops = append(drops, r.dropTime)
		}
	}
	sort.Slice(drops, func(i, j int) bool { return drops[i] < drops[j] })
	var b strings.Builder
	fmt.Fprintf(&b, "flood mode=%s n=%d connected=%d dial_errors=%d dropped=%d not_dropped=%d auth_requests=%d",
		*mode, *n, connected, dialErrors, len(drops), counts["not_dropped"], authReqs)
	keys := make([]string, 0, len(counts))
	for k := range counts {
		if k != "not_dropped" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%d", k, counts[k])
	}
	if len(drops) > 0 {
		fmt.Fprintf(&b, " drop_s_min=%.2f drop_s_max=%.2f", drops[0].Seconds(), drops[len(drops)-1].Seconds())
	}
	fmt.Println(b.String())
	return nil
}

func startupPacket(params map[string]string) []byte {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	body := binary.BigEndian.AppendUint32(nil, protocol30)
	for _, k := range keys {
		body = append(body, k...)
		body = append(body, 0)
		body = append(body, params[k]...)
		body = append(body, 0)
	}
	body = append(body, 0)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body)+4)), body...)
}

func floodOne(addr string, startup []byte, hold, dialTimeout time.Duration) floodResult {
	c, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return floodResult{dialErr: true}
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetDeadline(start.Add(hold))
	if len(startup) > 0 {
		if _, err := c.Write(startup); err != nil {
			return floodResult{outcome: "reset", dropTime: time.Since(start)}
		}
	}
	var res floodResult
	br := bufio.NewReader(c)
	for {
		typ, body, err := readMessage(br)
		if err != nil {
			res.dropTime = time.Since(start)
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				res.outcome = "not_dropped"
			case res.outcome != "": // a FATAL came first
			case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
				res.outcome = "closed"
			case errors.Is(err, syscall.ECONNRESET):
				res.outcome = "reset"
			default:
				res.outcome = "error"
			}
			return res
		}
		switch typ {
		case 'R':
			res.authReq = true
		case 'E':
			res.outcome = "fatal_" + sqlstate(body)
		}
	}
}

// readMessage reads one backend message: type, int32 length, body.
func readMessage(br *bufio.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[1:]))
	if n < 4 || n > 1<<20 {
		return 0, nil, fmt.Errorf("bad message length %d", n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(br, body); err != nil {
		return 0, nil, err
	}
	return hdr[0], body, nil
}

// sqlstate returns the C field of an ErrorResponse body.
func sqlstate(body []byte) string {
	for len(body) > 0 && body[0] != 0 {
		field := body[0]
		end := 1
		for end < len(body) && body[end] != 0 {
			end++
		}
		if field == 'C' {
			return string(body[1:end])
		}
		if end >= len(body) {
			break
		}
		body = body[end+1:]
	}
	return "unknown"
}
