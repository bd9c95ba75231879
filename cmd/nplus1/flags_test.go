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
		{name: "bad int flag", args: []string{"--max-count", "many"}, want: `invalid value "many" for flag --max-count`},
		{name: "bad choice flag", args: []string{"--mode", "c"}, want: `invalid value "c" for flag --mode: want one of a, b`},
		{name: "bad bool flag", args: []string{"--verbose=maybe"}, want: `invalid boolean value "maybe" for --verbose`},
		{name: "bad env", env: map[string]string{"NPLUS1_MAX_COUNT": "x"}, want: `invalid value "x" for NPLUS1_MAX_COUNT (--max-count)`},
		{name: "bad env duration", env: map[string]string{"NPLUS1_WAIT": "10"}, want: `NPLUS1_WAIT (--wait)`},
		{name: "bad env choice", env: map[string]string{"NPLUS1_LOG_LEVEL": "loud"}, want: `NPLUS1_LOG_LEVEL (--log-level): want one of debug, info, warn, error`},
		{name: "missing config file", args: []string{"--config", filepath.Join(dir, "absent.yaml")}, want: "absent.yaml: no such file"},
		{name: "missing config file from env", env: map[string]string{"NPLUS1_CONFIG": filepath.Join(dir, "absent.yaml")}, want: "config file (NPLUS1_CONFIG)"},
		{name: "unknown key", config: "name: x\nlisten-on: 1\n", want: `unknown key "listen-on" (line 2); keys are flag names: name, max-count`},
		{name: "config key", config: "config: other.yaml\n", want: `unknown key "config"`},
		{name: "duplicate key", config: "name: x\nname: y\n", want: `key "name" given twice (line 2)`},
		{name: "bad value", config: "max-count: lots\n", want: `invalid value "lots" for key "max-count" (line 1)`},
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
	for _, want := range []string{"default 7; env NPLUS1_MAX_COUNT", "--mode a|b", "default 1s; env NPLUS1_WAIT"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q:\n%s", want, out)
		}
	}
}
