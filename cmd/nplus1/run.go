package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Exit codes, documented in the help text (see usageText).
const (
	exitOK       = 0 // success, including a shutdown by signal
	exitFindings = 1 // findings matched --fail-on
	exitUsage    = 2 // bad flag, bad value, unreadable config file
	exitFailure  = 3 // runtime failure: cannot listen, upstream TLS setup, ...
)

// usageError is a mistake in the command line, environment or config file:
// exit code 2. Its message says what to fix.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// findingsError reports that findings matched --fail-on: exit code 1. It is
// not a failure of nplus1, and carries no cause.
type findingsError struct {
	Count    int    // findings that matched
	FailOn   string // the --fail-on value
	Baseline bool   // only findings not in --baseline counted
}

func (e *findingsError) Error() string {
	if e.Baseline {
		return fmt.Sprintf("%s (not in --baseline) matched --fail-on %s", plural(e.Count, "new finding", "new findings"), e.FailOn)
	}
	return fmt.Sprintf("%s matched --fail-on %s", plural(e.Count, "finding", "findings"), e.FailOn)
}

// exitCode maps run's error to the process exit code.
func exitCode(err error) int {
	var ue *usageError
	var fe *findingsError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &fe):
		return exitFindings
	case errors.As(err, &ue):
		return exitUsage
	default:
		return exitFailure
	}
}

// command is one subcommand. Adding one is one setup function and one entry
// in commands.
type command struct {
	name    string
	args    string // synopsis of the positional arguments ("FILE..."); "" takes none
	summary string // one line for the command list
	about   string // paragraphs printed by help, after the synopsis
	// setup defines the command's flags on fs and returns the function that
	// runs the command once they are parsed.
	setup func(fs *flagSet) runFunc
}

// runFunc runs a command. Returning a *usageError prints the message and a
// pointer to the help; any other error is logged and exits with exitFailure.
// A shutdown by signal (ctx cancelled) is not an error.
type runFunc func(ctx context.Context, inv *invocation) error

// invocation is what a command gets from run.
type invocation struct {
	args   []string // positional arguments, after the flags
	getenv func(string) string
	stdout io.Writer // for the command's output; logs never go here
	stderr io.Writer
	logger *slog.Logger // to stderr, configured by --log-level and --log-format
	// logFormat is --log-format: "text" or "json".
	logFormat string
	// color is --color: auto, always or never (see useColor).
	color string
}

// useColor reports whether the command's output to w gets ANSI colors.
func (inv *invocation) useColor(w io.Writer) bool {
	return useColor(inv.color, w, inv.getenv)
}

// commands lists the subcommands, in the order help shows them.
func commands() []command {
	return []command{
		proxyCmd,
		replayCmd,
		demoCmd,
	}
}

func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// run is the whole program but for the process: it parses args (without the
// program name), runs the subcommand, and returns what the exit code is made
// from. It reports errors on stderr itself.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printUsage(stderr)
		return reportUsage(stderr, "", usageErrorf("no command given"))
	}
	switch name := args[0]; name {
	case "-version", "--version", "version":
		printVersion(stdout)
		return nil
	case "-h", "-help", "--help", "help":
		if name != "help" || len(args) == 1 {
			printUsage(stdout)
			return nil
		}
		c, ok := lookup(args[1])
		if !ok {
			return reportUsage(stderr, "", usageErrorf("unknown command %q; commands: %s", args[1], commandNames()))
		}
		fs := newFlagSet(c.name)
		c.setup(fs)
		printCommandUsage(stdout, c, fs)
		return nil
	}
	c, ok := lookup(args[0])
	if !ok {
		return reportUsage(stderr, "", usageErrorf("unknown command %q; commands: %s", args[0], commandNames()))
	}
	fs := newFlagSet(c.name)
	fn := c.setup(fs)
	rest, err := fs.parse(args[1:], getenv)
	if errors.Is(err, flag.ErrHelp) {
		printCommandUsage(stdout, c, fs)
		return nil
	}
	if err != nil {
		return reportUsage(stderr, c.name, err)
	}
	if c.args == "" && len(rest) > 0 {
		return reportUsage(stderr, c.name, usageErrorf("unexpected argument %q", rest[0]))
	}
	inv := &invocation{
		args:   rest,
		getenv: getenv,
		stdout: stdout,
		stderr: stderr,
		logger: newLogger(stderr, *fs.logLevel, *fs.logFormat),

		logFormat: *fs.logFormat,
		color:     *fs.color,
	}
	fs.warn(inv.logger)
	err = fn(ctx, inv)
	var ue *usageError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ue):
		return reportUsage(stderr, c.name, err)
	default:
		inv.logger.Error("exiting", "component", "main", "err", err)
		return err
	}
}

// reportUsage prints a usage error and where to find help, and returns err.
func reportUsage(stderr io.Writer, cmd string, err error) error {
	help := "nplus1 --help"
	prefix := "nplus1"
	if cmd != "" {
		help = "nplus1 help " + cmd
		prefix += " " + cmd
	}
	fmt.Fprintf(stderr, "%s: %v\nRun '%s' for usage.\n", prefix, err, help)
	return err
}

func commandNames() string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return strings.Join(names, ", ")
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `nplus1 watches an application's PostgreSQL traffic and reports the query
patterns that hurt at scale: N+1 loops, repeated queries, unpaginated reads,
SELECT *.

Usage:
  nplus1 <command> [flags]
  nplus1 help <command>
  nplus1 version

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, configText+`
Exit codes:
  0  success (also after SIGINT or SIGTERM)
  1  findings matched --fail-on
  2  usage or configuration error: bad flag, bad value, unreadable config file
  3  runtime failure: cannot listen, ...
`)
}

// configText explains the sources of flag values.
const configText = `
Every flag can also be set by an environment variable, NPLUS1_ followed by the
flag name in upper case with '_' for '-' (--max-connections is
NPLUS1_MAX_CONNECTIONS), or in a YAML file named by --config whose keys are the
flag names ("max-connections: 100"). The command line wins over the
environment, which wins over the config file. An empty variable counts as unset.
Kubernetes service links (NPLUS1_SERVICE_HOST, NPLUS1_PORT=tcp://10.0.0.5:6432,
...) are not settings: they are ignored, with a warning when they name a flag.
`

func printCommandUsage(w io.Writer, c command, fs *flagSet) {
	synopsis := "nplus1 " + c.name + " [flags]"
	if c.args != "" {
		synopsis += " " + c.args
	}
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", synopsis, strings.TrimSpace(c.about))
	fs.printDefaults(w)
	fmt.Fprint(w, configText)
}
