package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
)

// runArgs calls run with no environment and returns its output.
func runArgs(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, mapEnv(env), &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestHelp(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"Usage:", "nplus1 <command>", "proxy", "Exit codes:", "2  usage or configuration error", "NPLUS1_"}},
		{[]string{"-h"}, []string{"Commands:"}},
		{[]string{"help"}, []string{"Commands:"}},
		{[]string{"help", "proxy"}, []string{"Usage: nplus1 proxy [flags]", "--upstream URL", "env NPLUS1_UPSTREAM", "--log-level", "env NPLUS1_CONFIG"}},
		{[]string{"proxy", "--help"}, []string{"Usage: nplus1 proxy [flags]", "default 127.0.0.1:6432; env NPLUS1_LISTEN", "--shutdown-timeout"}},
		{[]string{"proxy", "-h"}, []string{"Usage: nplus1 proxy"}},
		{[]string{"proxy", "--listen", "x", "--help"}, []string{"Usage: nplus1 proxy"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			stdout, stderr, err := runArgs(t, nil, tt.args...)
			if err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			if stderr != "" {
				t.Errorf("got stderr %q, want none", stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("help lacks %q:\n%s", w, stdout)
				}
			}
		})
	}
}

func TestHelpListsEveryCommandAndFlag(t *testing.T) {
	top, _, _ := runArgs(t, nil, "--help")
	for _, c := range commands() {
		if !strings.Contains(top, "  "+c.name+" ") {
			t.Errorf("top help lacks command %q", c.name)
		}
		out, _, err := runArgs(t, nil, "help", c.name)
		if err != nil {
			t.Fatalf("help %s: %v", c.name, err)
		}
		fs := newFlagSet(c.name)
		c.setup(fs)
		for _, name := range fs.order {
			if !strings.Contains(out, "--"+name) || !strings.Contains(out, envName(name)) {
				t.Errorf("help %s lacks --%s or %s", c.name, name, envName(name))
			}
		}
	}
}

func TestRunUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string // in stderr
	}{
		{name: "no command", want: "nplus1: no command given"},
		{name: "unknown command", args: []string{"serve"}, want: `nplus1: unknown command "serve"; commands: ` + commandNames() + "\nRun 'nplus1 --help' for usage."},
		{name: "help for unknown command", args: []string{"help", "serve"}, want: `unknown command "serve"`},
		{name: "flag before command", args: []string{"--upstream", "h", "proxy"}, want: `unknown command "--upstream"`},
		{name: "unknown flag", args: []string{"proxy", "--listen-addr", "x"}, want: "nplus1 proxy: flag provided but not defined: --listen-addr\nRun 'nplus1 help proxy' for usage."},
		{name: "missing upstream", args: []string{"proxy"}, want: "--upstream is required"},
		{name: "positional argument", args: []string{"proxy", "--upstream", "h", "extra"}, want: `unexpected argument "extra"`},
		{name: "bad value", args: []string{"proxy", "--upstream", "h", "--queue-size", "-5"}, want: "--queue-size: must be positive"},
		{name: "bad env", args: []string{"proxy"}, env: map[string]string{"NPLUS1_SHUTDOWN_TIMEOUT": "soon"}, want: "NPLUS1_SHUTDOWN_TIMEOUT (--shutdown-timeout)"},
		{name: "unreadable config", args: []string{"proxy", "--config", "/nonexistent/nplus1.yaml"}, want: "config file (--config): open /nonexistent/nplus1.yaml"},
		{name: "tls-cert without key", args: []string{"proxy", "--upstream", "h", "--tls-cert", "c.pem"}, want: "--tls-cert needs --tls-key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, err := runArgs(t, tt.env, tt.args...)
			if got := exitCode(err); got != exitUsage {
				t.Errorf("got exit code %d (error %v), want %d", got, err, exitUsage)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("got stderr %q, want it to contain %q", stderr, tt.want)
			}
			if stdout != "" && tt.args != nil {
				t.Errorf("got stdout %q, want none", stdout)
			}
		})
	}
}

func TestRunCannotListen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, flag := range []string{"--listen", "--http"} {
		t.Run(flag, func(t *testing.T) {
			args := []string{"proxy", "--upstream", "127.0.0.1:1", "--listen", "127.0.0.1:0", flag, ln.Addr().String()}
			stdout, stderr, err := runArgs(t, nil, args...)
			if got := exitCode(err); got != exitFailure {
				t.Errorf("got exit code %d (error %v), want %d", got, err, exitFailure)
			}
			if !strings.Contains(stderr, "address already in use") || !strings.Contains(stderr, "level=ERROR") {
				t.Errorf("got stderr %q, want an error log line about the address in use", stderr)
			}
			if stdout != "" {
				t.Errorf("got stdout %q, want none", stdout)
			}
		})
	}
}
