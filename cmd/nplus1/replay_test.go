package main

import (
	"encoding/xml"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixture is a committed capture of package replay/pcap: one connection
// running an N+1 (a source query and six lookups).
var fixture = filepath.Join("..", "..", "replay", "pcap", "testdata", "basic.pcap")

func TestReplayText(t *testing.T) {
	stdout, stderr, err := runArgs(t, nil, "replay", "--progress", "off", fixture)
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, stderr)
	}
	for _, want := range []string{"nplus1: N+1 query [warning] 6 executions with 6 distinct parameter sets",
		"7 statements on 1 connection,", "; 0 errors; 1 finding (1 n_plus_one)", "SELECT name, email FROM users WHERE id = $1", "P95 ms"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
}

func TestReplayJUnitAndFailOn(t *testing.T) {
	out := filepath.Join(t.TempDir(), "report.xml")
	findings := filepath.Join(t.TempDir(), "findings.jsonl")
	_, stderr, err := runArgs(t, map[string]string{"NPLUS1_FAIL_ON": "n_plus_one"}, "replay", "--progress", "off",
		"--format", "junit", "--output", out, "--findings-out", findings, fixture)
	var fe *findingsError
	if !errors.As(err, &fe) || exitCode(err) != exitFindings {
		t.Fatalf("got %v (exit %d), want findings matched --fail-on\n%s", err, exitCode(err), stderr)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
	}
	if err := xml.Unmarshal(data, &doc); err != nil || doc.Tests != 1 || doc.Failures != 1 {
		t.Errorf("junit: %+v, %v\n%s", doc, err, data)
	}
	if b, _ := os.ReadFile(findings); strings.Count(string(b), "\n") != 1 || !strings.Contains(string(b), `"kind":"n_plus_one"`) {
		t.Errorf("findings file: %s", b)
	}
	if !strings.Contains(stderr, "FAIL") {
		t.Errorf("no fail-on summary on stderr:\n%s", stderr)
	}
}

func TestReplayUsageErrors(t *testing.T) {
	junk := filepath.Join(t.TempDir(), "junk.txt")
	os.WriteFile(junk, []byte("hello\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"replay"}, "no input"},
		{[]string{"replay", "/nonexistent/x.pcap"}, "no such file"},
		{[]string{"replay", junk}, "not a pcap, pcapng, nplus1 recording, csvlog or jsonlog file"},
		{[]string{"replay", "--speed", "0", fixture}, "--speed: must be positive"},
		{[]string{"replay", "--speed", "fast", fixture}, "want a number"},
		{[]string{"replay", "--port", "99999", fixture}, "--port"},
		{[]string{"replay", "--format", "xml", fixture}, "want one of text, json, junit"},
	} {
		_, stderr, err := runArgs(t, nil, tc.args...)
		if exitCode(err) != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and %q", tc.args, exitCode(err), stderr, tc.want)
		}
	}
}
