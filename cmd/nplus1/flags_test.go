package main

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mapEnv is a getenv over a map.
func mapEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// writeFile writes content to name in a temporary directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testFlags are the flags of a made-up command, for the generic layer.
type testFlags struct {
	name    *string
	count   *int
	wait    *time.Duration
	verbose *bool
	mode    *string
}

func newTestFlags() (*flagSet, *testFlags) {
	fs := newFlagSet("test")
	return fs, &testFlags{
		name:    fs.String("name", "default", "a name"),
		count:   fs.Int("max-count", 7, "a count"),
		wait:    fs.Duration("wait", time.Second, "a duration"),
		verbose: fs.Bool("verbose", false, "a switch"),
		mode:    fs.Choice("mode", "a", []string{"a", "b"}, "a choice"),
	}
}

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{
		"listen":               "NPLUS1_LISTEN",
		"max-connections":      "NPLUS1_MAX_CONNECTIONS",
		"upstream-sslrootcert": "NPLUS1_UPSTREAM_SSLROOTCERT",
	} {
		if got := envName(in); got != want {
			t.Errorf("envName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFlagPrecedence(t *testing.T) {
	cfg := writeFile(t, "nplus1.yaml", "name: from-config\nmax-count: 3\nwait: 2m\nverbose: true\nmode: b\n")
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		wantName  string
		wantCount int
		wantWait  time.Duration
		wantVerb  bool
		wantMode  string
		wantRest  []string
		wantFrom  string // origin of "name"
	}{
		{name: "defaults", wantName: "default", wantCount: 7, wantWait: time.Second, wantMode: "a"},
		{
			name: "config file", args: []string{"--config", cfg},
			wantName: "from-config", wantCount: 3, wantWait: 2 * time.Minute, wantVerb: true, wantMode: "b",
			wantFrom: "config file " + cfg,
		},
		{
			name: "config file from env", env: map[string]string{"NPLUS1_CONFIG": cfg},
			wantName: "from-config", wantCount: 3, wantWait: 2 * time.Minute, wantVerb: true, wantMode: "b",
			wantFrom: "config file " + cfg,
		},
		{
			name: "env over config", args: []string{"--config", cfg},
			env:      map[string]string{"NPLUS1_NAME": "from-env", "NPLUS1_MAX_COUNT": "4", "NPLUS1_VERBOSE": "false"},
			wantName: "from-env", wantCount: 4, wantWait: 2 * time.Minute, wantVerb: false, wantMode: "b",
			wantFrom: "NPLUS1_NAME",
		},
		{
			name: "flag over env over config", args: []string{"-config", cfg, "--name=from-flag", "--max-count", "5"},
			env:      map[string]string{"NPLUS1_NAME": "from-env", "NPLUS1_MAX_COUNT": "4", "NPLUS1_WAIT": "3s"},
			wantName: "from-flag", wantCount: 5, wantWait: 3 * time.Second, wantVerb: true, wantMode: "b",
			wantFrom: "--name",
		},
		{
			name: "empty env is unset", env: map[string]string{"NPLUS1_NAME": ""},
			wantName: "default", wantCount: 7, wantWait: time.Second, wantMode: "a",
		},
		{
			name: "flag to the empty string wins", args: []string{"--name="}, env: map[string]string{"NPLUS1_NAME": "x"},
			wantCount: 7, wantWait: time.Second, wantMode: "a", wantFrom: "--name",
		},
		{
			name: "positional arguments", args: []string{"--verbose", "a.pcap", "b.pcap"},
			wantName: "default", wantCount: 7, wantWait: time.Second, wantVerb: true, wantMode: "a",
			wantRest: []string{"a.pcap", "b.pcap"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, f := newTestFlags()
			rest, err := fs.parse(tt.args, mapEnv(tt.env))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if *f.name != tt.wantName || *f.count != tt.wantCount || *f.wait != tt.wantWait || *f.verbose != tt.wantVerb || *f.mode != tt.wantMode {
				t.Errorf("got name=%q max-count=%d wait=%v verbose=%v mode=%q, want %q %d %v %v %q",
					*f.name, *f.count, *f.wait, *f.verbose, *f.mode, tt.wantName, tt.wantCount, tt.wantWait, tt.wantVerb, tt.wantMode)
			}
			if strings.Join(rest, " ") != strings.Join(tt.wantRest, " ") {
				t.Errorf("got positional %q, want %q", rest, tt.wantRest)
			}
			if got := fs.origin["name"]; got != tt.wantFrom {
				t.Errorf("got origin of name %q, want %q", got, tt.wantFrom)
			}
		})
	}
}

func TestFlagErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name   string
		args   []string
		env    map[string]string
		config string // config file content, passed with --config
		want   string // substring of the error
	}{
		{name: "undefined flag", args: []string{"--nope"}, want: "flag provided but not defined: --nope"},
		{name: "missing argument", args: []string{"--name"}, want: "flag needs an argument: --name"},
		{name: "bad int flag", args: []string{"--max-count", "many"}, want: `invalid value "many" for flag --max-count: not a whole number; use digits such as 0, 10 or 1000`},
		{name: "int flag out of range", args: []string{"--max-count", "99999999999999999999"}, want: `--max-count: out of range; use a whole number such as 0, 10 or 1000`},
		{name: "bad duration flag", args: []string{"--wait", "5x"}, want: `invalid value "5x" for flag --wait: not a duration; use a Go duration such as 100ms, 2s or 1m`},
		{name: "duration without a unit", args: []string{"--wait=30"}, want: `invalid value "30" for flag --wait: not a duration: a number needs a unit, such as 30s or 30ms`},
		{name: "bad choice flag", args: []string{"--mode", "c"}, want: `invalid value "c" for flag --mode: want one of a, b`},
		{name: "bad bool flag", args: []string{"--verbose=maybe"}, want: `invalid boolean value "maybe" for --verbose: not a boolean; use true or false`},
		{name: "bad color flag", args: []string{"--color", "yes"}, want: `invalid value "yes" for flag --color: want one of auto, always, never`},
		{name: "bad env", env: map[string]string{"NPLUS1_MAX_COUNT": "x"}, want: `invalid value "x" for NPLUS1_MAX_COUNT (--max-count)`},
		{name: "bad env duration", env: map[string]string{"NPLUS1_WAIT": "10"}, want: `invalid value "10" for NPLUS1_WAIT (--wait): not a duration: a number needs a unit, such as 10s or 10ms`},
		{name: "bad env bool", env: map[string]string{"NPLUS1_VERBOSE": "yes please"}, want: `invalid value "yes please" for NPLUS1_VERBOSE (--verbose): not a boolean; use true or false`},
		{name: "bad env choice", env: map[string]string{"NPLUS1_LOG_LEVEL": "loud"}, want: `NPLUS1_LOG_LEVEL (--log-level): want one of debug, info, warn, error`},
		{name: "missing config file", args: []string{"--config", filepath.Join(dir, "absent.yaml")}, want: "absent.yaml: no such file"},
		{name: "missing config file from env", env: map[string]string{"NPLUS1_CONFIG": filepath.Join(dir, "absent.yaml")}, want: "config file (NPLUS1_CONFIG)"},
		{name: "unknown key", config: "name: x\nlisten-on: 1\n", want: `unknown key "listen-on" (line 2); keys are flag names: name, max-count`},
		{name: "config key", config: "config: other.yaml\n", want: `unknown key "config"`},
		{name: "duplicate key", config: "name: x\nname: y\n", want: `key "name" given twice (line 2)`},
		{name: "bad value", config: "max-count: lots\n", want: `invalid value "lots" for key "max-count" (line 1): not a whole number; use digits`},
		{name: "bad duration value", config: "wait: soon\n", want: `invalid value "soon" for key "wait" (line 1): not a duration; use a Go duration such as 100ms, 2s or 1m`},
		{name: "list value", config: "name: [a, b]\n", want: `key "name" (line 1): want a single value`},
		{name: "not a mapping", config: "- name\n", want: "want a mapping of flag names to values"},
		{name: "bad yaml", config: "name: 'x\n", want: "config file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.config != "" {
				args = append([]string{"--config", writeFile(t, "c.yaml", tt.config)}, args...)
			}
			fs, _ := newTestFlags()
			_, err := fs.parse(args, mapEnv(tt.env))
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("got error %v (%T), want a *usageError", err, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestFlagHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "-help"} {
		fs, _ := newTestFlags()
		if _, err := fs.parse([]string{arg}, mapEnv(nil)); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("parse(%q): got %v, want flag.ErrHelp", arg, err)
		}
	}
}

func TestConfigFileEdgeCases(t *testing.T) {
	t.Run("empty file", func(t *testing.T) {
		fs, f := newTestFlags()
		if _, err := fs.parse([]string{"--config", writeFile(t, "c.yaml", "")}, mapEnv(nil)); err != nil {
			t.Fatal(err)
		}
		if *f.name != "default" {
			t.Errorf("got name %q, want the default", *f.name)
		}
	})
	t.Run("null value is the empty string", func(t *testing.T) {
		fs, f := newTestFlags()
		if _, err := fs.parse([]string{"--config", writeFile(t, "c.yaml", "name:\n")}, mapEnv(nil)); err != nil {
			t.Fatal(err)
		}
		if *f.name != "" {
			t.Errorf("got name %q, want empty", *f.name)
		}
	})
	t.Run("common flags", func(t *testing.T) {
		fs, _ := newTestFlags()
		if _, err := fs.parse([]string{"--config", writeFile(t, "c.yaml", "log-level: debug\nlog-format: json\n")}, mapEnv(nil)); err != nil {
			t.Fatal(err)
		}
		if *fs.logLevel != "debug" || *fs.logFormat != "json" {
			t.Errorf("got log-level %q log-format %q, want debug json", *fs.logLevel, *fs.logFormat)
		}
	})
}

func TestPrintDefaultsShowsEnv(t *testing.T) {
	fs, _ := newTestFlags()
	var b strings.Builder
	fs.printDefaults(&b)
	out := b.String()
	for _, name := range fs.order {
		if !strings.Contains(out, "--"+name) || !strings.Contains(out, "env "+envName(name)) {
			t.Errorf("help lacks --%s or its env twin %s:\n%s", name, envName(name), out)
		}
	}
	for _, want := range []string{"--max-count int\n", "default 7; env NPLUS1_MAX_COUNT", "--mode a|b", "--wait duration\n", "default 1s; env NPLUS1_WAIT",
		"--verbose\n", "--color auto|always|never\n", "default auto; env NPLUS1_COLOR"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q:\n%s", want, out)
		}
	}
}

// TestBoolFlagAlone: a bool flag given alone is true, and takes =false.
func TestBoolFlagAlone(t *testing.T) {
	for args, want := range map[string]bool{"--verbose": true, "--verbose=false": false, "--verbose=1": true, "": false} {
		fs, f := newTestFlags()
		if _, err := fs.parse(strings.Fields(args), mapEnv(nil)); err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		if *f.verbose != want {
			t.Errorf("%q: verbose = %v, want %v", args, *f.verbose, want)
		}
	}
}

// kubernetesLinks are the variables Kubernetes puts in every container of a
// namespace that has a Service named nplus1 with ports 6432 (named
// postgres) and 9632 (named http).
var kubernetesLinks = map[string]string{
	"NPLUS1_SERVICE_HOST":          "10.0.0.5",
	"NPLUS1_SERVICE_PORT":          "6432",
	"NPLUS1_SERVICE_PORT_POSTGRES": "6432",
	"NPLUS1_SERVICE_PORT_HTTP":     "9632",
	"NPLUS1_PORT":                  "tcp://10.0.0.5:6432",
	"NPLUS1_PORT_6432_TCP":         "tcp://10.0.0.5:6432",
	"NPLUS1_PORT_6432_TCP_PROTO":   "tcp",
	"NPLUS1_PORT_6432_TCP_PORT":    "6432",
	"NPLUS1_PORT_6432_TCP_ADDR":    "10.0.0.5",
	"NPLUS1_PORT_9632_TCP":         "tcp://10.0.0.5:9632",
	"NPLUS1_PORT_9632_TCP_PROTO":   "tcp",
	"NPLUS1_PORT_9632_TCP_PORT":    "9632",
	"NPLUS1_PORT_9632_TCP_ADDR":    "10.0.0.5",
}

func TestServiceLink(t *testing.T) {
	for name, value := range kubernetesLinks {
		if !serviceLink(name, value) {
			t.Errorf("serviceLink(%s=%s) = false, want true", name, value)
		}
	}
	for _, tc := range []struct {
		name, value string
		want        bool
	}{
		{"NPLUS1_PORT", "tcp://[fd00::5]:6432", true},
		{"NPLUS1_PORT", "UDP://10.0.0.5:53", true},
		{"NPLUS1_PORT", "5432", false},           // replay's --port
		{"NPLUS1_PORT", "5432,6432", false},      // replay's --port
		{"NPLUS1_PORT", "tcp://10.0.0.5", false}, // no port: not a link
		{"NPLUS1_PORT", "tcp://h:99999", false},
		{"NPLUS1_PORT_X", "1", false},
		{"NPLUS1_PORT_6432_HTTP", "1", false},
		{"NPLUS1_SERVICE", "x", false},
		{"NPLUS1_UPSTREAM", "tcp://10.0.0.5:5432", false},
		{"OTHER_SERVICE_HOST", "10.0.0.6", false},
	} {
		if got := serviceLink(tc.name, tc.value); got != tc.want {
			t.Errorf("serviceLink(%s=%s) = %v, want %v", tc.name, tc.value, got, tc.want)
		}
	}
}

// TestServiceLinksIgnored: flags whose variables a Kubernetes Service named
// nplus1 defines keep their defaults, with the variables listed for one
// warning; a real value in the same variable is taken, and a bad one is
// still an error.
func TestServiceLinksIgnored(t *testing.T) {
	newFS := func() (*flagSet, *string, *int) {
		fs := newFlagSet("test")
		return fs, fs.String("port", "5432", "ports"), fs.Int("service-port", 1, "a flag that would collide")
	}
	fs, port, svcPort := newFS()
	if _, err := fs.parse(nil, mapEnv(kubernetesLinks)); err != nil {
		t.Fatalf("parse with the service links: %v", err)
	}
	if *port != "5432" || *svcPort != 1 {
		t.Errorf("got port %q service-port %d, want the defaults 5432 and 1", *port, *svcPort)
	}
	if got := strings.Join(fs.ignored, " "); got != "NPLUS1_PORT NPLUS1_SERVICE_PORT" {
		t.Errorf("ignored %q, want NPLUS1_PORT NPLUS1_SERVICE_PORT", got)
	}
	var logs strings.Builder
	fs.warn(newLogger(&logs, "info", "text"))
	if n := strings.Count(logs.String(), "\n"); n != 1 || !strings.Contains(logs.String(), "level=WARN") ||
		!strings.Contains(logs.String(), "variables=NPLUS1_PORT,NPLUS1_SERVICE_PORT") || strings.Contains(logs.String(), "10.0.0.5") {
		t.Errorf("want one warning naming the variables, not their values; got:\n%s", logs.String())
	}

	fs, port, _ = newFS()
	if _, err := fs.parse(nil, mapEnv(map[string]string{"NPLUS1_PORT": "6432,7432"})); err != nil || *port != "6432,7432" || len(fs.ignored) != 0 {
		t.Errorf("NPLUS1_PORT=6432,7432: port %q, ignored %v, err %v; want it taken", *port, fs.ignored, err)
	}
	fs, _, _ = newFS()
	top := fs.Int("top", 20, "a number")
	env := map[string]string{"NPLUS1_TOP": "lots"}
	for k, v := range kubernetesLinks {
		env[k] = v
	}
	_, err := fs.parse(nil, mapEnv(env))
	if err == nil || !strings.Contains(err.Error(), `invalid value "lots" for NPLUS1_TOP (--top): not a whole number`) {
		t.Errorf("a bad value among the links: got %v (top %d), want an error", err, *top)
	}
	fs, _, _ = newFS()
	if _, err := fs.parse(nil, mapEnv(map[string]string{"NPLUS1_PORT": "6432"})); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	fs.warn(newLogger(&logs, "info", "text"))
	if logs.Len() != 0 {
		t.Errorf("nothing ignored, yet a warning: %s", logs.String())
	}
}
