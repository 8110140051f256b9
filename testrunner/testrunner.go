// Package testrunner implements `sidelog test -c sidelog.yaml TESTS.yaml`:
// it runs the lines of each test case through the configured pipeline
// (assembler, parser, filters, routes; nothing is read, buffered or sent)
// and compares the records each output receives with the expected ones.
// The file format is documented in docs/testing-rules.md.
package testrunner

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/pipeline"
	"github.com/sidelog/sidelog/plugins"
)

// File is a test file.
type File struct {
	Tests []Case `yaml:"tests"`
}

// Case is one test.
type Case struct {
	Name string `yaml:"name"`
	// Input is the input whose parser and assembler read the lines
	// (default: the config's only input).
	Input string `yaml:"input"`
	// Path is meta.path (default /var/log/sidelog-test/<input>.log).
	Path string `yaml:"path"`
	// Lines are the raw lines, as the file holds them.
	Lines []string `yaml:"lines"`
	// Expect maps an output name to the records it must receive, in order.
	// Outputs not named are not checked; `[]` says it receives nothing.
	Expect map[string][]any `yaml:"expect"`
	// ExpectNoOutput: no output receives any record.
	ExpectNoOutput bool `yaml:"expect_no_output"`
	// Ignore lists fields (dotted paths) removed from received records
	// before comparing (values that change per run, e.g. set from now()).
	Ignore []string `yaml:"ignore"`

	line int
}

// Options are the runner's settings.
type Options struct {
	// Registry holds the plugins (default plugins.Default).
	Registry *plugins.Registry
	// Out receives the report.
	Out io.Writer
}

// Run loads the config and the test file and runs every case. It returns
// whether all passed; err is a problem with the files themselves.
func Run(configPath, testsPath string, opts Options) (bool, error) {
	if opts.Registry == nil {
		opts.Registry = plugins.Default
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	cfg, err := config.Load(configPath, opts.Registry)
	if err != nil {
		return false, err
	}
	tf, err := LoadFile(testsPath)
	if err != nil {
		return false, err
	}
	p, err := pipeline.Build(cfg, pipeline.Options{Registry: opts.Registry})
	if err != nil {
		return false, err
	}
	defer p.Close()

	outputs := map[string]bool{}
	for _, o := range cfg.Outputs {
		outputs[o.Name] = true
	}
	var setupErrs []error
	for _, c := range tf.Tests {
		if c.Input == "" && len(cfg.Inputs) == 1 {
			c.Input = cfg.Inputs[0].Name
		}
		if c.Input == "" {
			setupErrs = append(setupErrs, fmt.Errorf("%s:%d: test %q: name its input (the config has %d)", testsPath, c.line, c.Name, len(cfg.Inputs)))
		}
		for name := range c.Expect {
			if !outputs[name] {
				setupErrs = append(setupErrs, fmt.Errorf("%s:%d: test %q: no output named %q", testsPath, c.line, c.Name, name))
			}
		}
		for _, ig := range c.Ignore {
			if !validPath(ig) {
				setupErrs = append(setupErrs, fmt.Errorf("%s:%d: test %q: invalid field path %q in ignore", testsPath, c.line, c.Name, ig))
			}
		}
	}
	if err := errors.Join(setupErrs...); err != nil {
		return false, err
	}

	failed := 0
	for _, c := range tf.Tests {
		if c.Input == "" {
			c.Input = cfg.Inputs[0].Name
		}
		path := c.Path
		if path == "" {
			path = "/var/log/sidelog-test/" + c.Input + ".log"
		}
		lines := make([][]byte, len(c.Lines))
		for i, l := range c.Lines {
			lines[i] = []byte(l)
		}
		got, err := p.Process(c.Input, path, lines)
		if err != nil {
			return false, fmt.Errorf("%s:%d: test %q: %w", testsPath, c.line, c.Name, err)
		}
		report := compare(&c, got)
		if report == "" {
			fmt.Fprintf(opts.Out, "PASS %s\n", c.Name)
			continue
		}
		failed++
		fmt.Fprintf(opts.Out, "FAIL %s (%s:%d)\n%s", c.Name, testsPath, c.line, report)
	}
	if failed > 0 {
		fmt.Fprintf(opts.Out, "%d of %d tests failed\n", failed, len(tf.Tests))
		return false, nil
	}
	fmt.Fprintf(opts.Out, "all %d tests passed\n", len(tf.Tests))
	return true, nil
}

// LoadFile reads a test file strictly (unknown keys are errors).
func LoadFile(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(f.Tests) == 0 {
		return nil, fmt.Errorf("%s: no tests", path)
	}
	// Line numbers of the cases, for reports.
	if len(doc.Content) > 0 {
		root := doc.Content[0]
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value == "tests" {
				for j, item := range root.Content[i+1].Content {
					if j < len(f.Tests) {
						f.Tests[j].line = item.Line
					}
				}
			}
		}
	}
	var errs []error
	for i, c := range f.Tests {
		if c.Name == "" {
			errs = append(errs, fmt.Errorf("%s:%d: tests[%d]: a test needs a name", path, c.line, i))
		}
		if len(c.Expect) == 0 && !c.ExpectNoOutput {
			errs = append(errs, fmt.Errorf("%s:%d: tests[%d]: give expect (per output) or expect_no_output: true", path, c.line, i))
		}
		if len(c.Expect) > 0 && c.ExpectNoOutput {
			errs = append(errs, fmt.Errorf("%s:%d: tests[%d]: expect and expect_no_output exclude each other", path, c.line, i))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &f, nil
}

// compare returns a readable report of the differences, "" when none.
func compare(c *Case, got map[string][][]byte) string {
	var b strings.Builder
	names := make([]string, 0, len(got))
	for name := range got {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		gotRecs := make([]string, 0, len(got[name]))
		for _, raw := range got[name] {
			gotRecs = append(gotRecs, canonicalJSON(raw, c.Ignore))
		}
		var wantRecs []string
		switch {
		case c.ExpectNoOutput:
		default:
			want, checked := c.Expect[name]
			if !checked {
				continue
			}
			for _, w := range want {
				wantRecs = append(wantRecs, canonical(w))
			}
		}
		if equal(gotRecs, wantRecs) {
			continue
		}
		fmt.Fprintf(&b, "  output %s: expected %d record(s), got %d   (- expected, + got)\n", name, len(wantRecs), len(gotRecs))
		for _, l := range diff(wantRecs, gotRecs) {
			fmt.Fprintf(&b, "    %s\n", l)
		}
	}
	return b.String()
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// canonical renders a value as JSON with sorted keys, numbers as a JSON
// parser reads them (so 1 from YAML equals 1.0 from JSON).
func canonical(v any) string {
	b, err := json.Marshal(normalize(v))
	if err != nil {
		return fmt.Sprintf("<%v>", err)
	}
	var x any
	if err := json.Unmarshal(b, &x); err != nil {
		return fmt.Sprintf("<%v>", err)
	}
	out, _ := json.Marshal(x)
	return string(out)
}

func canonicalJSON(raw []byte, ignore []string) string {
	var x any
	if err := json.Unmarshal(raw, &x); err != nil {
		return "<invalid JSON: " + string(raw) + ">"
	}
	if m, ok := x.(map[string]any); ok {
		for _, ig := range ignore {
			deletePath(m, strings.Split(ig, "."))
		}
	}
	out, _ := json.Marshal(x)
	return string(out)
}

// normalize turns YAML's map[string]any / map[any]any trees into JSON-able ones.
func normalize(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[k] = normalize(x)
		}
		return m
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[fmt.Sprint(k)] = normalize(x)
		}
		return m
	case []any:
		s := make([]any, len(t))
		for i, x := range t {
			s[i] = normalize(x)
		}
		return s
	}
	return v
}

// diff is a longest-common-subsequence diff of two record lists.
func diff(want, got []string) []string {
	n, m := len(want), len(got)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if want[i] == got[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []string
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && want[i] == got[j]:
			out = append(out, "  "+want[i])
			i++
			j++
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			out = append(out, "- "+want[i])
			i++
		default:
			out = append(out, "+ "+got[j])
			j++
		}
	}
	return out
}

// Main is the `sidelog test` command: args are what follows "test". It
// returns the exit code: 0 all passed, 1 a test failed, 2 the config or the
// test file is wrong.
func Main(args []string, stdout, stderr io.Writer, reg *plugins.Registry) int {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", "sidelog.yaml", "config file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sidelog test -c sidelog.yaml TESTS.yaml...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	code := 0
	for _, tests := range fs.Args() {
		ok, err := Run(*cfgPath, tests, Options{Registry: reg, Out: stdout})
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		if !ok {
			code = 1
		}
	}
	return code
}

func validPath(s string) bool {
	for _, seg := range strings.Split(s, ".") {
		if seg == "" {
			return false
		}
	}
	return true
}

// deletePath removes the value at a dotted path.
func deletePath(m map[string]any, path []string) {
	for _, seg := range path[:len(path)-1] {
		next, ok := m[seg].(map[string]any)
		if !ok {
			return
		}
		m = next
	}
	delete(m, path[len(path)-1])
}
