package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/internal/pgtest"
	"github.com/nplus1/nplus1/internal/shop"
)

// logSettings make the server write csvlog and jsonlog with every
// statement, its duration and the connections.
var logSettings = []string{
	"log_destination = 'csvlog,jsonlog'", "logging_collector = on", "log_directory = 'log'",
	"log_min_duration_statement = 0", "log_connections = on", "log_disconnections = on", "log_timezone = 'UTC'",
}

// startTcpdump captures loopback traffic on port into file; stop ends it
// with SIGINT and waits for it. A missing tcpdump fails the test.
func startTcpdump(t *testing.T, file string, port int) (stop func()) {
	t.Helper()
	bin, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Fatalf("tcpdump is needed to make the capture fixtures (Debian/Ubuntu: apt-get install tcpdump; scripts/test.sh installs it): %v", err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "-i", "lo", "-U", "-n", "-w", file, "tcp port "+strconv.Itoa(port))
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start tcpdump: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// tcpdump creates the file once it listens; give it a moment more.
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := os.Stat(file); err == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("tcpdump exited before capturing: %v\n%s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("tcpdump did not start capturing within 15s:\n%s", stderr.String())
		}
	}
	time.Sleep(500 * time.Millisecond)
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		time.Sleep(300 * time.Millisecond) // let the last packets through
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("tcpdump did not stop on SIGINT:\n%s", stderr.String())
		}
	}
	t.Cleanup(stop)
	return stop
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// findingKey is what must match between the live run and a replay; with
// the source, an N+1's evidence too: its kind, and for the data flow the
// source's column, the loop's parameter and how many of its keys matched.
type findingKey struct {
	Kind        detector.Kind
	Fingerprint string
	Source      string
	Evidence    detector.Evidence
}

func keysOf(fs []detector.Finding, app string, withSource bool, skip ...detector.Kind) []findingKey {
	var out []findingKey
	for _, f := range fs {
		if f.ApplicationName != app || slices.Contains(skip, f.Kind) {
			continue
		}
		k := findingKey{Kind: f.Kind, Fingerprint: f.Fingerprint}
		if withSource && f.Source != nil {
			k.Source = f.Source.Fingerprint
		}
		if withSource && f.Evidence != nil {
			ev := *f.Evidence
			k.Evidence = detector.Evidence{Kind: ev.Kind, SourceFingerprint: ev.SourceFingerprint, SourceColumn: ev.SourceColumn,
				Param: ev.Param, Matched: ev.Matched, Of: ev.Of}
		}
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b findingKey) int {
		return strings.Compare(fmt.Sprintf("%+v", a), fmt.Sprintf("%+v", b))
	})
	return out
}

func uniq(ks []findingKey) []findingKey { return slices.Compact(slices.Clone(ks)) }

// TestReplayMatchesLiveRun runs the shop workload with pgx through the real
// proxy against a real PostgreSQL, while tcpdump captures the proxy's port,
// the proxy records, and the server writes csvlog and jsonlog; then replays
// all four and expects the live run's findings from each.
func TestReplayMatchesLiveRun(t *testing.T) {
	dir := t.TempDir()
	pcap := filepath.Join(dir, "live.pcap")
	recDir := filepath.Join(dir, "recording") + "/"
	liveOut := filepath.Join(dir, "live.jsonl")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pg := startPostgresWith(t, ctx, shop.Schema, pgtest.Options{Settings: logSettings})

	port := freeLoopbackPort(t)
	stopCapture := startTcpdump(t, pcap, port)

	pctx, stopProxy := context.WithCancel(ctx)
	defer stopProxy()
	logs := newLogWatcher()
	args := []string{"proxy", "--listen", "127.0.0.1:" + strconv.Itoa(port), "--upstream", pg.Addr(),
		"--record", recDir, "--findings-out", liveOut, "--log-format", "json", "--shutdown-timeout", "5s"}
	done := make(chan error, 1)
	go func() { done <- run(pctx, args, mapEnv(nil), &bytes.Buffer{}, logs) }()
	select {
	case <-logs.listening:
	case err := <-done:
		t.Fatalf("proxy returned %v before listening:\n%s", err, logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("proxy not listening after 30s:\n%s", logs)
	}

	const app = "shop-replay-e2e"
	conn, err := pgx.Connect(ctx, pgtest.URLFor("127.0.0.1:"+strconv.Itoa(port), pgtest.Superuser, "application_name="+app))
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	for _, s := range shop.Scenarios() {
		for _, f := range []func(context.Context, *pgx.Conn) error{s.Bad, s.Fixed} {
			if err := f(ctx, conn); err != nil {
				t.Fatalf("scenario %s: %v", s.Name, err)
			}
			time.Sleep(shop.Pause)
		}
	}
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	stopProxy()
	if err := <-done; err != nil {
		t.Fatalf("proxy: %v\n%s", err, logs)
	}
	stopCapture()

	live := readFindings(t, liveOut)
	liveKeys := keysOf(live, app, true)
	var kinds []string
	for _, k := range liveKeys {
		kinds = append(kinds, string(k.Kind))
	}
	// The live run itself found the workload's patterns, and proved an N+1
	// from the data flow (which the pcap and recording replays must too).
	for _, want := range []detector.Kind{detector.KindNPlusOne, detector.KindDuplicateQuery, detector.KindUnpaginated, detector.KindSelectStar} {
		if !slices.Contains(kinds, string(want)) {
			t.Fatalf("live run lacks %s: %v\n%s", want, kinds, logs)
		}
	}
	if !slices.ContainsFunc(liveKeys, func(k findingKey) bool { return k.Evidence.Kind == detector.EvidenceDataFlow }) {
		t.Fatalf("live run proved no N+1 from the data flow: %+v", liveKeys)
	}

	// The server's logs (copied before the server and its directory go).
	csvs, _ := filepath.Glob(filepath.Join(pg.Dir, "log", "*.csv"))
	jsons, _ := filepath.Glob(filepath.Join(pg.Dir, "log", "*.json"))
	if len(csvs) == 0 || len(jsons) == 0 {
		t.Fatalf("the server wrote no csvlog (%v) or jsonlog (%v)", csvs, jsons)
	}
	waitForLog(t, csvs, app)
	csvs, jsons = copyInto(t, dir, csvs), copyInto(t, dir, jsons)

	// Re-execution of the capture against the same database finds the same
	// patterns in what the database answers now.
	t.Run("reexecute", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		args := []string{"replay", "--format", "json", "--progress", "off", "--target", pg.URL(pgtest.Superuser), "--port", strconv.Itoa(port), pcap}
		if err := run(ctx, args, mapEnv(nil), &stdout, &stderr); err != nil {
			t.Fatalf("replay --target: %v\n%s", err, stderr.String())
		}
		var doc struct {
			Mode     string             `json:"mode"`
			Findings []detector.Finding `json:"findings"`
			Summary  struct {
				Statements int `json:"statements"`
				Errors     int `json:"errors"`
			} `json:"summary"`
			Skipped map[string]int `json:"skipped"`
		}
		if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
			t.Fatalf("replay output: %v\n%s", err, stdout.String())
		}
		if doc.Mode != "re-execution" || doc.Summary.Statements == 0 || doc.Summary.Errors != 0 {
			t.Fatalf("re-execution: %+v\n%s", doc, stderr.String())
		}
		// Writes are skipped without --allow-writes: no lost_update.
		want := uniq(keysOf(live, app, false, detector.KindLostUpdate))
		if got := uniq(keysOf(doc.Findings, app, false)); !slices.Equal(got, want) {
			t.Errorf("findings of the re-execution:\n got  %v\n want %v (live); skipped %v", got, want, doc.Skipped)
		}
	})
	pg.Stop()

	for _, tc := range []struct {
		name       string
		args       []string
		withSource bool
		skip       []detector.Kind
	}{
		// A capture and a recording hold the rows' and parameters' digests:
		// the same sources and evidence as the live run.
		{"pcap", []string{"--port", strconv.Itoa(port), pcap}, true, nil},
		{"recording", []string{recDir}, true, nil},
		// Logs have no row counts: no unpaginated finding, no N+1 source,
		// no data-flow evidence; and no digests of bound parameters: no
		// lost_update by a bound key.
		{"csvlog", csvs, false, []detector.Kind{detector.KindUnpaginated, detector.KindLostUpdate}},
		{"jsonlog", jsons, false, []detector.Kind{detector.KindUnpaginated, detector.KindLostUpdate}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"replay", "--format", "json", "--progress", "off"}, tc.args...)
			if err := run(ctx, args, mapEnv(nil), &stdout, &stderr); err != nil {
				t.Fatalf("replay: %v\n%s", err, stderr.String())
			}
			var doc struct {
				Findings []detector.Finding `json:"findings"`
				Summary  struct {
					Statements int `json:"statements"`
				} `json:"summary"`
				Input struct {
					Notes []string `json:"notes"`
				} `json:"input"`
			}
			if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
				t.Fatalf("replay output: %v\n%s", err, stdout.String())
			}
			want := keysOf(live, app, tc.withSource, tc.skip...)
			got := keysOf(doc.Findings, app, tc.withSource)
			if tc.withSource {
				if !slices.Equal(got, want) {
					t.Errorf("findings:\n got  %v\n want %v (live)\nnotes: %v", got, want, doc.Input.Notes)
				}
			} else if g, w := uniq(got), uniq(want); !slices.Equal(g, w) {
				t.Errorf("findings:\n got  %v\n want %v (live)\nnotes: %v", g, w, doc.Input.Notes)
			}
			if doc.Summary.Statements == 0 {
				t.Errorf("no statements replayed")
			}
			if tc.name == "recording" {
				// One clock for the live run and the recording: the same
				// times to the nanosecond.
				times := func(fs []detector.Finding) []string {
					var out []string
					for _, f := range fs {
						if f.ApplicationName == app {
							out = append(out, fmt.Sprintf("%s %s %s %s", f.Kind, f.Time.Format(time.RFC3339Nano), f.WindowStart.Format(time.RFC3339Nano), f.WindowEnd.Format(time.RFC3339Nano)))
						}
					}
					slices.Sort(out)
					return out
				}
				if got, want := times(doc.Findings), times(live); !slices.Equal(got, want) {
					t.Errorf("finding times differ from the live run's:\n got  %v\n want %v", got, want)
				}
			}
		})
	}
}

func readFindings(t *testing.T, file string) []detector.Finding {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []detector.Finding
	for line := range strings.Lines(string(data)) {
		var f detector.Finding
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("findings file line %q: %v", line, err)
		}
		out = append(out, f)
	}
	return out
}

// waitForLog waits until the server's log shows the session's end.
func waitForLog(t *testing.T, files []string, app string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, f := range files {
			data, _ := os.ReadFile(f)
			for line := range strings.Lines(string(data)) {
				if strings.Contains(line, "disconnection:") && strings.Contains(line, app) {
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the server's log never showed the end of the %s session", app)
}

// copyInto copies files into dir and returns the copies' names.
func copyInto(t *testing.T, dir string, files []string) []string {
	t.Helper()
	var out []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, filepath.Base(f))
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
		out = append(out, dst)
	}
	return out
}
