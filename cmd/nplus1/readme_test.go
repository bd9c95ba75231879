package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The README's flag tables are the users' reference: this test keeps them
// and the real flag sets in step, as dashboards/promql_test.go keeps the
// dashboards and the exported metrics.
//
// The layout it expects, under "## Flags" in README.md: one or more tables
// whose header starts with "flag | env | default", each under a "###" heading
// that names, in backquotes, the commands whose flags the table lists
// ("### `proxy`", "### `proxy`, `replay` and `demo`: detection"). A row's
// first cell holds the flags in backquotes (`--listen ADDR`; several flags
// may share a row), its second their NPLUS1_ variables in the same order, its
// third the default: when it is a single code span (`100ms`), it must be the
// flag's real default; prose ("none", "off", "the URL's, else `disable`") is
// not checked.

// readmeFlagRow is one flag of a row of a README flag table.
type readmeFlagRow struct {
	name     string   // flag name without dashes
	env      string   // the env cell's entry for this flag ("" when missing)
	def      string   // the default cell, as written
	heading  string   // the "###" heading the table is under
	commands []string // the commands that heading names
	line     int      // 1-based line in README.md
}

func TestReadmeFlagTables(t *testing.T) {
	const readme = "README.md"
	data, err := os.ReadFile(filepath.Join("..", "..", readme))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	rows, errs := parseReadmeFlags(string(data), names)
	for _, e := range errs {
		t.Errorf("%s:%s", readme, e)
	}
	if len(rows) == 0 {
		t.Fatalf(`%s: no flag table found under "## Flags"; want "###" headings naming commands in backquotes, each over a table "| flag | env | default | meaning |"`, readme)
	}

	// The flags each row documents, with the commands that have them: a
	// row shared by several commands must be right for each.
	type rowKey struct {
		line int
		name string
	}
	type cmdFlag struct {
		command string
		flag    *flag.Flag
	}
	flags := make(map[rowKey][]cmdFlag)
	for _, c := range commands() {
		fs := newFlagSet(c.name)
		c.setup(fs)

		// The rows that apply to c, by flag name.
		documented := make(map[string]readmeFlagRow)
		for _, r := range rows {
			if !slices.Contains(r.commands, c.name) {
				continue
			}
			if prev, dup := documented[r.name]; dup {
				t.Errorf("%s:%d: --%s is listed again for `%s` (first at line %d, under %s): keep one row",
					readme, r.line, r.name, c.name, prev.line, headingName(prev.heading))
				continue
			}
			documented[r.name] = r
		}

		// Every flag of c has a row that applies to c.
		for _, name := range fs.order {
			if _, ok := documented[name]; ok {
				continue
			}
			var elsewhere []string
			for _, r := range rows {
				if r.name == name {
					elsewhere = append(elsewhere, fmt.Sprintf("line %d, under %s", r.line, headingName(r.heading)))
				}
			}
			if len(elsewhere) > 0 {
				t.Errorf("%s: nplus1 %s has --%s, but its row (%s) is under a heading that does not name `%s`: add `%s` to that heading",
					readme, c.name, name, strings.Join(elsewhere, "; "), c.name, c.name)
			} else {
				t.Errorf("%s: nplus1 %s has --%s (env %s) but the Flags section has no row for it: add one to the table under a heading that names `%s`",
					readme, c.name, name, envName(name), c.name)
			}
		}

		// Every row that applies to c is a flag of c.
		for _, r := range rows {
			if documented[r.name].line != r.line {
				continue // another command's, or a duplicate reported above
			}
			fl := fs.fs.Lookup(r.name)
			if fl == nil {
				t.Errorf("%s:%d: the row for --%s is under %s, which names `%s`, but nplus1 %s has no flag --%s: remove the row, or `%s` from the heading",
					readme, r.line, r.name, headingName(r.heading), c.name, c.name, r.name, c.name)
				continue
			}
			k := rowKey{r.line, r.name}
			flags[k] = append(flags[k], cmdFlag{c.name, fl})
		}
	}

	// Each row, once: its variable and its default.
	for _, r := range rows {
		fls, ok := flags[rowKey{r.line, r.name}]
		if !ok {
			continue // reported above
		}
		if want := envName(r.name); r.env != want {
			got := r.env
			if got == "" {
				got = "nothing"
			}
			t.Errorf("%s:%d: the env cell of --%s says %s, want `%s` (NPLUS1_ and the flag name in upper case, _ for -)",
				readme, r.line, r.name, got, want)
		}
		for _, cf := range fls {
			if msg := checkReadmeDefault(cf.flag, r.def); msg != "" {
				t.Errorf("%s:%d: the default of --%s (nplus1 %s) %s", readme, r.line, r.name, cf.command, msg)
				break
			}
		}
	}
}

// headingName quotes a "###" heading for a message.
func headingName(h string) string {
	if h == "" {
		return "no ### heading"
	}
	return fmt.Sprintf("%q", h)
}

// checkReadmeDefault compares a README default cell with the flag's real
// default, when the cell is a single code span; it returns what is wrong, or
// "".
func checkReadmeDefault(fl *flag.Flag, cell string) string {
	spans, rest := codeSpans(cell)
	if len(spans) != 1 || strings.TrimSpace(rest) != "" {
		return "" // prose: not checked
	}
	got, want := spans[0], fl.DefValue
	if got == want {
		return ""
	}
	// Durations: `1m` in the README, 1m0s from the flag package.
	if dg, err := time.ParseDuration(got); err == nil {
		if dw, err := time.ParseDuration(want); err == nil && dg == dw {
			return ""
		}
	}
	if want == "" {
		return fmt.Sprintf("is given as `%s`, but the flag has none: write none (or say what applies) in prose", got)
	}
	return fmt.Sprintf("is given as `%s`, but the flag's default is %s: fix the README row", got, want)
}

// parseReadmeFlags returns the rows of the flag tables in the "## Flags"
// section of a README, one per flag, and the problems with the section's
// layout.
func parseReadmeFlags(readme string, commandNames []string) ([]readmeFlagRow, []string) {
	var (
		rows     []readmeFlagRow
		errs     []string
		inFlags  bool
		heading  string   // current "###" heading
		cmds     []string // the commands it names
		inTable  bool     // inside a table (after its header)
		isFlags  bool     // the current table is a flag table
		inFence  bool     // inside a ``` block
		lastLine int
	)
	for i, line := range strings.Split(readme, "\n") {
		n := i + 1
		lastLine = n
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		switch {
		case strings.HasPrefix(line, "## "):
			inFlags = strings.TrimSpace(line[3:]) == "Flags"
			heading, cmds, inTable = "", nil, false
			continue
		case !inFlags:
			continue
		case strings.HasPrefix(line, "### "):
			heading = strings.TrimSpace(line)
			inTable = false
			spans, _ := codeSpans(line[4:])
			cmds = nil
			for _, s := range spans {
				if !slices.Contains(commandNames, s) {
					errs = append(errs, fmt.Sprintf("%d: heading %q names `%s`, which is not a command (commands: %s)",
						n, heading, s, strings.Join(commandNames, ", ")))
					continue
				}
				cmds = append(cmds, s)
			}
			continue
		}
		if !strings.HasPrefix(trimmed, "|") {
			inTable = false
			continue
		}
		cells := tableCells(trimmed)
		if !inTable {
			// The header row.
			inTable = true
			isFlags = len(cells) >= 3 && strings.EqualFold(cells[0], "flag") &&
				strings.EqualFold(cells[1], "env") && strings.EqualFold(cells[2], "default")
			if !isFlags {
				errs = append(errs, fmt.Sprintf("%d: a table in the Flags section must start with the columns flag | env | default | meaning, not %q",
					n, strings.Join(cells, " | ")))
			} else if len(cmds) == 0 {
				errs = append(errs, fmt.Sprintf("%d: the flag table under %s does not say whose flags it lists: put it under a \"###\" heading that names the commands in backquotes (### `proxy`)",
					n, headingName(heading)))
			}
			continue
		}
		if !isFlags || isSeparatorRow(cells) {
			continue
		}
		if len(cells) < 3 {
			errs = append(errs, fmt.Sprintf("%d: a flag row needs the cells flag | env | default | meaning, got %q", n, trimmed))
			continue
		}
		flagSpans, _ := codeSpans(cells[0])
		var flags []string
		for _, s := range flagSpans {
			if name, ok := strings.CutPrefix(s, "--"); ok {
				name, _, _ = strings.Cut(name, " ")
				flags = append(flags, name)
			}
		}
		if len(flags) == 0 {
			errs = append(errs, fmt.Sprintf("%d: the first cell of a flag row holds no `--flag`: %q", n, cells[0]))
			continue
		}
		envs, _ := codeSpans(cells[1])
		if len(envs) != len(flags) {
			errs = append(errs, fmt.Sprintf("%d: the row names %d flags and %d variables: give one `NPLUS1_...` per flag, in the same order",
				n, len(flags), len(envs)))
		}
		for j, name := range flags {
			r := readmeFlagRow{name: name, def: cells[2], heading: heading, commands: cmds, line: n}
			if j < len(envs) {
				r.env = envs[j]
			}
			rows = append(rows, r)
		}
	}
	if inFence {
		errs = append(errs, fmt.Sprintf("%d: a ``` block is not closed", lastLine))
	}
	return rows, errs
}

// tableCells splits a Markdown table row into its trimmed cells. A | inside
// a code span or escaped as \| does not split.
func tableCells(row string) []string {
	row = strings.TrimSpace(row)
	row = strings.TrimPrefix(row, "|")
	if strings.HasSuffix(row, "|") && !strings.HasSuffix(row, `\|`) {
		row = row[:len(row)-1]
	}
	var cells []string
	var cell strings.Builder
	inCode := false
	for i := 0; i < len(row); i++ {
		switch c := row[i]; {
		case c == '\\' && i+1 < len(row) && row[i+1] == '|':
			cell.WriteByte('|')
			i++
		case c == '`':
			inCode = !inCode
			cell.WriteByte(c)
		case c == '|' && !inCode:
			cells = append(cells, strings.TrimSpace(cell.String()))
			cell.Reset()
		default:
			cell.WriteByte(c)
		}
	}
	return append(cells, strings.TrimSpace(cell.String()))
}

// isSeparatorRow reports whether cells are a table's |---|---:| row.
func isSeparatorRow(cells []string) bool {
	for _, c := range cells {
		if strings.Trim(c, ":-") != "" || c == "" {
			return false
		}
	}
	return true
}

// codeSpans returns the contents of the `code spans` in s (single
// backquotes) and the text outside them.
func codeSpans(s string) (spans []string, rest string) {
	var out strings.Builder
	for {
		i := strings.IndexByte(s, '`')
		if i < 0 {
			out.WriteString(s)
			return spans, out.String()
		}
		j := strings.IndexByte(s[i+1:], '`')
		if j < 0 {
			out.WriteString(s)
			return spans, out.String()
		}
		out.WriteString(s[:i])
		spans = append(spans, s[i+1:i+1+j])
		s = s[i+1+j+1:]
	}
}

// The parser itself, on a small README: the layout rules and the messages.
func TestParseReadmeFlags(t *testing.T) {
	const doc = "# x\n\n## Flags\n\nIntro `--not-a-row`.\n\n" +
		"### `proxy`, `demo`\n\n" +
		"| flag | env | default | meaning |\n|---|---|---|---|\n" +
		"| `--listen ADDR` | `NPLUS1_LISTEN` | `127.0.0.1:6432` | where `a|b` |\n" +
		"| `--tls-cert FILE`, `--tls-key FILE` | `NPLUS1_TLS_CERT`, `NPLUS1_TLS_KEY` | none | both |\n\n" +
		"```\n| `--in-fence` | `NPLUS1_IN_FENCE` | x | y |\n```\n\n" +
		"### Other\n\n| flag | env | default | meaning |\n|---|---|---|---|\n| `--orphan` | `NPLUS1_ORPHAN` | x | y |\n\n" +
		"### `serve`\n\n| name | meaning |\n|---|---|\n| a | b |\n\n" +
		"## Exit codes\n\n| flag | env | default |\n|---|---|---|\n| `--after` | `NPLUS1_AFTER` | x |\n"
	rows, errs := parseReadmeFlags(doc, []string{"proxy", "replay", "demo"})
	var got []string
	for _, r := range rows {
		got = append(got, fmt.Sprintf("%s %s %s %v", r.name, r.env, r.def, r.commands))
	}
	want := []string{
		"listen NPLUS1_LISTEN `127.0.0.1:6432` [proxy demo]",
		"tls-cert NPLUS1_TLS_CERT none [proxy demo]",
		"tls-key NPLUS1_TLS_KEY none [proxy demo]",
		"orphan NPLUS1_ORPHAN x []",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got rows\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	wantErrs := []string{
		`does not say whose flags it lists`,
		"names `serve`, which is not a command",
		"must start with the columns flag | env | default | meaning",
	}
	if len(errs) != len(wantErrs) {
		t.Fatalf("got errors %q, want %d", errs, len(wantErrs))
	}
	for i, w := range wantErrs {
		if !strings.Contains(errs[i], w) {
			t.Errorf("got error %q, want it to contain %q", errs[i], w)
		}
	}
}

func TestCheckReadmeDefault(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Duration("cooldown", time.Minute, "")
	fs.Int("n", 5, "")
	fs.String("empty", "", "")
	tests := []struct {
		flag, cell string
		ok         bool
	}{
		{"cooldown", "`1m`", true},
		{"cooldown", "`60s`", true},
		{"cooldown", "`2m`", false},
		{"n", "`5`", true},
		{"n", "`6`", false},
		{"n", "five, see `--x`", true}, // prose is not checked
		{"empty", "none", true},
		{"empty", "`x`", false},
	}
	for _, tt := range tests {
		msg := checkReadmeDefault(fs.Lookup(tt.flag), tt.cell)
		if (msg == "") != tt.ok {
			t.Errorf("--%s with cell %q: got %q, want ok=%v", tt.flag, tt.cell, msg, tt.ok)
		}
	}
}
