package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// envPrefix starts the environment twin of every flag: --max-connections is
// also NPLUS1_MAX_CONNECTIONS.
const envPrefix = "NPLUS1_"

// envName is the environment variable that sets the flag name.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// flagSet is a flag.FlagSet that also reads each flag from its environment
// twin and from a YAML config file whose keys are the flag names. The command
// line wins over the environment, which wins over the config file, which wins
// over the default. Every command gets the common flags (--config,
// --log-level, --log-format) for free.
type flagSet struct {
	fs     *flag.FlagSet
	order  []string          // flag names in definition order, for help
	common map[string]bool   // flags defined by newFlagSet, listed apart in help
	origin map[string]string // name → where its value came from, after parse
	// ignored are the environment variables parse left out because they
	// are Kubernetes service links, not settings (see serviceLink).
	ignored []string

	config    *string
	logLevel  *string
	logFormat *string
	color     *string
}

// Log levels, log formats and color modes the common flags accept.
var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"text", "json"}
	colorModes = []string{colorAuto, colorAlways, colorNever}
)

func newFlagSet(command string) *flagSet {
	f := &flagSet{
		fs:     flag.NewFlagSet(command, flag.ContinueOnError),
		common: make(map[string]bool),
		origin: make(map[string]string),
	}
	f.fs.SetOutput(io.Discard) // errors are returned, help is printed by the caller
	f.fs.Usage = func() {}
	f.config = f.String("config", "", "read flag values from this YAML `FILE`; its keys are the flag names")
	f.logLevel = f.Choice("log-level", "info", logLevels, "log level")
	f.logFormat = f.Choice("log-format", "text", logFormats, "log format on stderr")
	f.color = f.Choice("color", colorAuto, colorModes, "color findings on the console: auto (on a terminal, unless NO_COLOR is set),\n"+
		"always (in CI logs that show colors too) or never")
	for _, name := range f.order {
		f.common[name] = true
	}
	return f
}

// String defines a string flag.
func (f *flagSet) String(name, value, usage string) *string {
	f.add(name)
	return f.fs.String(name, value, usage)
}

// Int defines an int flag.
func (f *flagSet) Int(name string, value int, usage string) *int {
	v := &intValue{p: new(int)}
	*v.p = value
	f.Var(v, name, usage)
	return v.p
}

// Duration defines a time.Duration flag.
func (f *flagSet) Duration(name string, value time.Duration, usage string) *time.Duration {
	v := &durationValue{p: new(time.Duration)}
	*v.p = value
	f.Var(v, name, usage)
	return v.p
}

// Bool defines a bool flag.
func (f *flagSet) Bool(name string, value bool, usage string) *bool {
	v := &boolValue{p: new(bool)}
	*v.p = value
	f.Var(v, name, usage)
	return v.p
}

// Choice defines a string flag that accepts only one of choices. The default
// may be outside choices ("" meaning "not set").
func (f *flagSet) Choice(name, value string, choices []string, usage string) *string {
	p := new(string)
	*p = value
	f.Var(&choiceValue{p: p, choices: choices}, name, usage)
	return p
}

// Var defines a flag with a custom value; value holds the default.
func (f *flagSet) Var(value flag.Value, name, usage string) {
	f.add(name)
	f.fs.Var(value, name, usage)
}

func (f *flagSet) add(name string) {
	if slices.Contains(f.order, name) {
		panic("flag redefined: " + name)
	}
	f.order = append(f.order, name)
}

// parse sets the flags from args, then fills those still unset from getenv,
// then from the config file named by --config or NPLUS1_CONFIG. It returns
// the positional arguments, flag.ErrHelp for -h/--help, and a *usageError
// naming the flag, variable or config key for anything wrong.
func (f *flagSet) parse(args []string, getenv func(string) string) ([]string, error) {
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageErrorf("%v", dashes(err.Error()))
	}
	f.fs.Visit(func(fl *flag.Flag) { f.origin[fl.Name] = "--" + fl.Name })
	for _, name := range f.order {
		if _, set := f.origin[name]; set {
			continue
		}
		env := envName(name)
		v := getenv(env)
		if v == "" {
			continue // an empty variable counts as unset
		}
		if serviceLink(env, v) {
			f.ignored = append(f.ignored, env)
			continue
		}
		vals := []string{v}
		if _, ok := f.fs.Lookup(name).Value.(listValue); ok {
			// A repeatable flag takes one entry per line from its variable.
			vals = slices.DeleteFunc(strings.Split(v, "\n"), func(s string) bool { return strings.TrimSpace(s) == "" })
		}
		for _, v := range vals {
			if err := f.fs.Set(name, v); err != nil {
				return nil, usageErrorf("invalid value %q for %s (--%s): %v", v, env, name, err)
			}
		}
		f.origin[name] = env
	}
	if *f.config != "" {
		if err := f.loadConfig(*f.config); err != nil {
			return nil, err
		}
	}
	return f.fs.Args(), nil
}

// warn logs, once, the environment variables parse ignored as Kubernetes
// service links. Their values are not logged.
func (f *flagSet) warn(logger *slog.Logger) {
	if len(f.ignored) == 0 {
		return
	}
	logger.Warn("ignoring environment variables that are Kubernetes service links, not nplus1 settings",
		"component", "main", "variables", strings.Join(f.ignored, ","),
		"hint", "a Kubernetes Service named nplus1 defines them in every pod of its namespace; give these flags on the command line or in --config")
}

// loadConfig applies the values of a YAML config file to the flags that are
// still unset.
func (f *flagSet) loadConfig(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return usageErrorf("config file (%s): %v", f.origin["config"], err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return usageErrorf("config file %s: %v", file, err)
	}
	if len(doc.Content) == 0 {
		return nil // empty file
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return usageErrorf("config file %s: want a mapping of flag names to values (line %d)", file, m.Line)
	}
	seen := make(map[string]bool)
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		name := k.Value
		if !slices.Contains(f.order, name) || name == "config" {
			return usageErrorf("config file %s: unknown key %q (line %d); keys are flag names: %s",
				file, name, k.Line, strings.Join(f.configKeys(), ", "))
		}
		if seen[name] {
			return usageErrorf("config file %s: key %q given twice (line %d)", file, name, k.Line)
		}
		seen[name] = true
		if _, set := f.origin[name]; set {
			continue
		}
		if v.Kind == yaml.SequenceNode {
			if _, ok := f.fs.Lookup(name).Value.(listValue); !ok {
				return usageErrorf("config file %s: key %q (line %d): want a single value, not a list", file, name, v.Line)
			}
			for _, item := range v.Content {
				if item.Kind != yaml.ScalarNode {
					return usageErrorf("config file %s: key %q (line %d): want a list of plain values", file, name, item.Line)
				}
				if err := f.fs.Set(name, item.Value); err != nil {
					return usageErrorf("config file %s: invalid value %q for key %q (line %d): %v", file, item.Value, name, item.Line, err)
				}
			}
			f.origin[name] = "config file " + file
			continue
		}
		if v.Kind != yaml.ScalarNode {
			return usageErrorf("config file %s: key %q (line %d): want a single value", file, name, v.Line)
		}
		val := v.Value
		if v.Tag == "!!null" {
			val = ""
		}
		if err := f.fs.Set(name, val); err != nil {
			return usageErrorf("config file %s: invalid value %q for key %q (line %d): %v", file, val, name, v.Line, err)
		}
		f.origin[name] = "config file " + file
	}
	return nil
}

// configKeys are the keys a config file may hold, command flags first.
func (f *flagSet) configKeys() []string {
	cmd, common := f.names()
	return slices.DeleteFunc(append(cmd, common...), func(n string) bool { return n == "config" })
}

// names returns the command's own flags and the common flags, each in
// definition order.
func (f *flagSet) names() (cmd, common []string) {
	for _, name := range f.order {
		if f.common[name] {
			common = append(common, name)
		} else {
			cmd = append(cmd, name)
		}
	}
	return cmd, common
}

// errorf returns a *usageError about flag name that says where its value came
// from: "--max-connections (from NPLUS1_MAX_CONNECTIONS): must be 0 or more".
func (f *flagSet) errorf(name, format string, args ...any) error {
	where := "--" + name
	if o, ok := f.origin[name]; ok && o != where {
		where += " (from " + o + ")"
	}
	return usageErrorf("%s: %s", where, fmt.Sprintf(format, args...))
}

// printDefaults writes the flags, their env twins and defaults, in
// definition order, command flags first.
func (f *flagSet) printDefaults(w io.Writer) {
	cmd, common := f.names()
	if len(cmd) > 0 {
		fmt.Fprintln(w, "\nFlags:")
		f.printFlags(w, cmd)
	}
	fmt.Fprintln(w, "\nCommon flags:")
	f.printFlags(w, common)
}

func (f *flagSet) printFlags(w io.Writer, names []string) {
	for _, name := range names {
		fl := f.fs.Lookup(name)
		arg, usage := flag.UnquoteUsage(fl)
		if c, ok := fl.Value.(*choiceValue); ok {
			arg = strings.Join(c.choices, "|")
		}
		if a, ok := fl.Value.(interface{ argName() string }); ok && arg == "value" {
			arg = a.argName()
		}
		line := "  --" + name
		if arg != "" {
			line += " " + arg
		}
		fmt.Fprintln(w, line)
		for l := range strings.SplitSeq(usage, "\n") {
			fmt.Fprintf(w, "        %s\n", l)
		}
		if fl.DefValue != "" && fl.DefValue != "0" && fl.DefValue != "false" {
			fmt.Fprintf(w, "        default %s; ", fl.DefValue)
		} else {
			fmt.Fprint(w, "        ")
		}
		fmt.Fprintf(w, "env %s\n", envName(name))
	}
}

// dashes rewrites the flag package's "-name" in its error messages to the
// "--name" spelling the help text uses.
func dashes(msg string) string {
	for _, p := range []string{"defined: -", "argument: -", "for flag -", "for -"} {
		msg = strings.Replace(msg, p, p+"-", 1)
	}
	return msg
}

// choiceValue is a string flag restricted to a list of values.
type choiceValue struct {
	p       *string
	choices []string
}

func (v *choiceValue) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return *v.p
}

func (v *choiceValue) Set(s string) error {
	if !slices.Contains(v.choices, s) {
		return fmt.Errorf("want one of %s", strings.Join(v.choices, ", "))
	}
	*v.p = s
	return nil
}

// listValue is a flag that may be given more than once; each use adds an
// entry. In the environment its entries are one per line, in a config file a
// YAML list (or a single value).
type listValue interface {
	flag.Value
	isList()
}

// intValue is an int flag whose error says what a valid value looks like.
type intValue struct{ p *int }

func (v *intValue) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return strconv.Itoa(*v.p)
}

func (v *intValue) Set(s string) error {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 0, strconv.IntSize)
	switch {
	case errors.Is(err, strconv.ErrRange):
		return errors.New("out of range; use a whole number such as 0, 10 or 1000")
	case err != nil:
		return errors.New("not a whole number; use digits such as 0, 10 or 1000")
	}
	*v.p = int(n)
	return nil
}

func (v *intValue) argName() string { return "int" }

// durationValue is a time.Duration flag whose error says what a valid value
// looks like.
type durationValue struct{ p *time.Duration }

func (v *durationValue) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return v.p.String()
}

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		if _, nerr := strconv.ParseFloat(strings.TrimSpace(s), 64); nerr == nil {
			return fmt.Errorf("not a duration: a number needs a unit, such as %ss or %sms", strings.TrimSpace(s), strings.TrimSpace(s))
		}
		return errors.New("not a duration; use a Go duration such as 100ms, 2s or 1m")
	}
	*v.p = d
	return nil
}

func (v *durationValue) argName() string { return "duration" }

// boolValue is a bool flag whose error says what a valid value looks like.
// Given without a value (--evidence), it is true.
type boolValue struct{ p *bool }

func (v *boolValue) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return strconv.FormatBool(*v.p)
}

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return errors.New("not a boolean; use true or false")
	}
	*v.p = b
	return nil
}

// IsBoolFlag lets the flag package take "--name" alone as "--name=true".
func (v *boolValue) IsBoolFlag() bool { return true }

// serviceLinkValue is the value Kubernetes gives a service link variable:
// a protocol, a host and a port.
var serviceLinkValue = regexp.MustCompile(`^(?i:tcp|udp|sctp)://(.+)$`)

// serviceLink reports whether the variable name=value is one of those
// Kubernetes puts in every container of a namespace for each Service (for a
// Service named nplus1: NPLUS1_SERVICE_HOST, NPLUS1_SERVICE_PORT,
// NPLUS1_SERVICE_PORT_<NAME>, NPLUS1_PORT=tcp://10.0.0.5:6432,
// NPLUS1_PORT_6432_TCP=tcp://..., and its _PROTO, _PORT and _ADDR), which
// nplus1 must not take for its own settings. NPLUS1_PORT is also replay's
// --port: there, only a value of the tcp://host:port form is a link.
func serviceLink(name, value string) bool {
	rest, ok := strings.CutPrefix(name, envPrefix)
	if !ok {
		return false
	}
	if rest == "SERVICE_HOST" || rest == "SERVICE_PORT" || strings.HasPrefix(rest, "SERVICE_PORT_") {
		return true
	}
	if rest != "PORT" && !strings.HasPrefix(rest, "PORT_") {
		return false
	}
	if m := serviceLinkValue.FindStringSubmatch(strings.TrimSpace(value)); m != nil {
		_, port, err := net.SplitHostPort(m[1])
		if _, perr := strconv.ParseUint(port, 10, 16); err == nil && perr == nil {
			return true
		}
	}
	// NPLUS1_PORT_6432_TCP_PROTO, _PORT, _ADDR: a port number and a protocol
	// in the name.
	parts := strings.Split(rest, "_")
	if len(parts) < 3 || parts[0] != "PORT" {
		return false
	}
	if _, err := strconv.ParseUint(parts[1], 10, 16); err != nil {
		return false
	}
	switch parts[2] {
	case "TCP", "UDP", "SCTP":
		return true
	}
	return false
}
