// Package config loads sidelog's YAML configuration strictly: unknown keys,
// wrong types, bad sizes and durations, missing ${VAR}s, unknown plugins and
// expressions that do not compile are all refused at load, every one reported
// with its file, line and key path, all at once.
package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sidelog/sidelog/buffer"
	"github.com/sidelog/sidelog/config/units"
	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/expression"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/parser/build"
	"github.com/sidelog/sidelog/plugins"
)

// Config is the whole agent configuration.
type Config struct {
	DataDir         string           `yaml:"data_dir"`
	LogLevel        string           `yaml:"log_level"`
	API             API              `yaml:"api"`
	ShutdownTimeout time.Duration    `yaml:"shutdown_timeout"`
	DeadLetter      DeadLetterConfig `yaml:"dead_letter"`
	Metrics         MetricsConfig    `yaml:"metrics"`
	// Parsers are the named parsers (`parser: <name>` on an input, or a
	// pod's sidelog.io/parser annotation with the kubernetes filter's api).
	Parsers []parser.Named `yaml:"parsers"`
	Inputs  []Input        `yaml:"inputs"`
	Filters []Filter       `yaml:"filters"`
	Outputs []Output       `yaml:"outputs"`

	// File is the path the config was read from (several, comma-joined,
	// when it came from several files or a directory).
	File string `yaml:"-"`
	// Paths are the -c arguments the config was loaded from, as given
	// (a file or a directory each): a reload loads them again.
	Paths []string `yaml:"-"`

	secrets []secret
	root    *yaml.Node
	files   []string // the files of a merged config (Errors.files)
}

// MetricsConfig is the metrics block.
type MetricsConfig struct {
	// PerFileLag exports sidelog_input_file_lag_bytes, one series per
	// open file (off: a DaemonSet node holds hundreds of files).
	PerFileLag bool `yaml:"per_file_lag"`
}

// API is the HTTP API block.
type API struct {
	Address string `yaml:"address"`
	Tap     bool   `yaml:"tap"`
	Pprof   bool   `yaml:"pprof"`
	Admin   Admin  `yaml:"admin"`
}

// Admin is api.admin: the listener that alone serves /tap, /debug/pprof/
// and POST /-/reload. Off unless address or socket is set.
type Admin struct {
	// Address is a loopback host:port (another host needs TokenFile).
	Address string `yaml:"address"`
	// Socket is a unix socket path (created 0600).
	Socket string `yaml:"socket"`
	// TokenFile holds a bearer token every admin request must send.
	TokenFile string `yaml:"token_file"`
}

// DeadLetterConfig bounds the dead-letter files.
type DeadLetterConfig struct {
	MaxBytes units.Size `yaml:"max_bytes"`
	// WhenFull is block (the output pauses, shown blocked; nothing lost) or
	// drop_oldest (the oldest files are removed, every record counted).
	WhenFull string `yaml:"when_full"`
}

// Input is one `inputs:` entry: the engine's keys, the parser's keys, and the
// plugin's own config (Plugin, a pointer to the plugin's config struct).
type Input struct {
	Name   string        `yaml:"name"`
	Type   string        `yaml:"type"`
	Parser parser.Config `yaml:",inline"`
	Plugin any           `yaml:"-"`

	node *yaml.Node
}

// Filter is one `filters:` entry.
type Filter struct {
	// Name, optional, labels the filter's metrics (filter="NAME") instead
	// of its position, which changes when a filter is inserted before it.
	Name string `yaml:"name"`
	Type string `yaml:"type"`
	When string `yaml:"when"`
	// WhenProgram is the compiled `when` (nil when absent).
	WhenProgram *expression.Program `yaml:"-"`
	Plugin      any                 `yaml:"-"`

	node *yaml.Node
}

// Output is one `outputs:` entry.
type Output struct {
	Name   string               `yaml:"name"`
	Type   string               `yaml:"type"`
	Route  string               `yaml:"route"`
	Buffer buffer.Config        `yaml:"buffer"`
	Batch  delivery.BatchConfig `yaml:"batch"`
	Retry  delivery.RetryConfig `yaml:"retry"`
	// RouteProgram is the compiled route (nil: every record).
	RouteProgram *expression.Program `yaml:"-"`
	Plugin       any                 `yaml:"-"`

	node *yaml.Node
}

// Defaults fills what the user left out.
func (c *Config) Defaults() {
	if c.DataDir == "" {
		c.DataDir = "/var/lib/sidelog"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 25 * time.Second
	}
	if c.DeadLetter.MaxBytes == 0 {
		c.DeadLetter.MaxBytes = 256 << 20
	}
	if c.DeadLetter.WhenFull == "" {
		c.DeadLetter.WhenFull = delivery.WhenFullBlock
	}
	for i := range c.Outputs {
		o := &c.Outputs[i]
		if o.Batch.MaxEvents == 0 {
			o.Batch.MaxEvents = 1000
		}
		if o.Batch.MaxBytes == 0 {
			o.Batch.MaxBytes = 5 << 20
		}
		if o.Batch.Timeout == 0 {
			o.Batch.Timeout = time.Second
		}
		if o.Batch.MinEvents == 0 {
			o.Batch.MinEvents = o.Batch.MaxEvents
		}
		if o.Batch.Linger == 0 {
			o.Batch.Linger = delivery.DefaultLinger
		}
		if o.Retry.Initial == 0 {
			o.Retry.Initial = 500 * time.Millisecond
		}
		if o.Retry.Max == 0 {
			o.Retry.Max = 30 * time.Second
		}
		if o.Buffer.WhenFull == "" {
			o.Buffer.WhenFull = "block"
		}
	}
}

// Error is one problem in a config file.
type Error struct {
	File string
	Line int
	Path string
	Msg  string

	order int // file index × lineBlock + line: errors sort in file order
}

func (e Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a config file, in file order.
type Errors struct {
	File string
	List []Error
	// files are the files of a merged config, in order: a line number
	// n × lineBlock + l is line l of files[n] (see files.go).
	files []string
	// secrets are substituted values and the references they came from:
	// a message never shows a substituted value, only its ${...} text.
	secrets []secret
}

type secret struct{ value, ref string }

// secret records that value came from the reference text ref.
func (e *Errors) secret(value, ref string) {
	if len(value) < 3 {
		return // too short to scrub without mangling messages; not a secret
	}
	e.secrets = append(e.secrets, secret{value, ref})
}

// scrub replaces every substituted value in msg by its reference, longest
// values first (a value may contain another).
func (e *Errors) scrub(msg string) string {
	if len(e.secrets) == 0 {
		return msg
	}
	sorted := slices.Clone(e.secrets)
	slices.SortFunc(sorted, func(a, b secret) int { return len(b.value) - len(a.value) })
	for _, s := range sorted {
		msg = strings.ReplaceAll(msg, s.value, s.ref)
		if q := strconv.Quote(s.value); q[1:len(q)-1] != s.value {
			msg = strings.ReplaceAll(msg, q[1:len(q)-1], s.ref)
		}
	}
	return msg
}

func (e *Errors) add(line int, path, msg string) {
	file, l := e.File, line
	if len(e.files) > 1 && line > 0 {
		if i := line / lineBlock; i < len(e.files) {
			file, l = e.files[i], line%lineBlock
		}
	}
	e.List = append(e.List, Error{File: file, Line: l, Path: path, Msg: e.scrub(msg), order: line})
}

// firstAt names where a duplicated name was first used, when the config
// was merged from several files (within one file the line says enough).
func (e *Errors) firstAt(line int) string {
	if len(e.files) < 2 || line <= 0 || line/lineBlock >= len(e.files) {
		return ""
	}
	return fmt.Sprintf(" (first used at %s:%d)", e.files[line/lineBlock], line%lineBlock)
}

func (e *Errors) Error() string {
	s := make([]string, len(e.List))
	for i, x := range e.List {
		s[i] = x.Error()
	}
	return strings.Join(s, "\n")
}

func (e *Errors) err() error {
	if len(e.List) == 0 {
		return nil
	}
	sort.SliceStable(e.List, func(i, j int) bool { return e.List[i].order < e.List[j].order })
	return e
}

// Load reads and checks the config at path: a file, or a directory whose
// *.yaml and *.yml files are merged (files.go).
func Load(path string, reg *plugins.Registry) (*Config, error) {
	return LoadFiles([]string{path}, reg)
}

// Parse checks a config given as bytes; name is used in error messages.
func Parse(name string, data []byte, reg *plugins.Registry) (*Config, error) {
	root, err := parseYAML(name, data)
	if err != nil {
		return nil, err
	}
	return parseRoot(name, root, nil, reg)
}

// parseYAML reads one YAML document; a syntax error names file and line.
func parseYAML(name string, data []byte) (*yaml.Node, error) {
	errs := &Errors{File: name}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg := err.Error()
		line := 0
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			fmt.Sscanf(m[1], "%d", &line)
			msg = strings.TrimSpace(yamlLine.ReplaceAllString(msg, ""))
		}
		msg = strings.TrimSpace(strings.TrimPrefix(msg, "yaml: "))
		errs.add(line, "", msg)
		return nil, errs.err()
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// parseRoot decodes and checks a config's root mapping; files, when the
// root was merged from several files, turn its line numbers back into
// file and line.
func parseRoot(name string, root *yaml.Node, files []string, reg *plugins.Registry) (*Config, error) {
	errs := &Errors{File: name, files: files}
	// Defaults that an explicit empty value may override are set before
	// decoding: `api: {address: ""}` turns the API off.
	cfg := &Config{File: name, Paths: []string{name}, API: API{Address: "127.0.0.1:2020"}, files: files}
	if root == nil {
		errs.add(0, "", "the config is empty")
		return nil, errs.err()
	}
	cfg.root = root
	d := &decoder{errs: errs, original: map[*yaml.Node]string{}}
	substitute(root, "", d)

	// The top level, without the plugin sections.
	skip := map[string]bool{"inputs": true, "filters": true, "outputs": true}
	d.decodeMapping(root, "", []reflect.Value{reflect.ValueOf(cfg).Elem()}, skip)
	cfg.Defaults()

	inputs := kind{"input", func(t string) (func() any, bool) {
		p, ok := reg.Input(t)
		return p.Config, ok
	}, reg.InputNames}
	filters := kind{"filter", func(t string) (func() any, bool) {
		p, ok := reg.Filter(t)
		return p.Config, ok
	}, reg.FilterNames}
	outputs := kind{"output", func(t string) (func() any, bool) {
		p, ok := reg.Output(t)
		return p.Config, ok
	}, reg.OutputNames}
	if n := find(root, "inputs"); n != nil {
		cfg.Inputs = decodeList(d, n, "inputs", func(item *yaml.Node, path string) Input {
			in := Input{node: item}
			in.Plugin = decodeEntry(d, item, path, inputs, &in, &in.Name)
			return in
		})
	} else {
		errs.add(root.Line, "inputs", "at least one input is required")
	}
	if n := find(root, "filters"); n != nil {
		cfg.Filters = decodeList(d, n, "filters", func(item *yaml.Node, path string) Filter {
			f := Filter{node: item}
			f.Plugin = decodeEntry(d, item, path, filters, &f, nil)
			return f
		})
	}
	if n := find(root, "outputs"); n != nil {
		cfg.Outputs = decodeList(d, n, "outputs", func(item *yaml.Node, path string) Output {
			o := Output{node: item}
			o.Plugin = decodeEntry(d, item, path, outputs, &o, &o.Name)
			return o
		})
	} else {
		errs.add(root.Line, "outputs", "at least one output is required")
	}
	cfg.Defaults()
	cfg.root = root
	cfg.check(reg, errs)
	switch cfg.DeadLetter.WhenFull {
	case delivery.WhenFullBlock, delivery.WhenFullDropOldest:
	default:
		line := root.Line
		if n := find(root, "dead_letter"); n != nil {
			line = lineOf(resolve(n), "when_full")
		}
		errs.add(line, "dead_letter.when_full", fmt.Sprintf("must be block or drop_oldest, not %q", cfg.DeadLetter.WhenFull))
	}
	cfg.secrets = errs.secrets
	if err := errs.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

var yamlLine = regexp.MustCompile(`line (\d+):`)

// kind is one plugin section: its name in messages and how to find a
// plugin's config factory in the registry.
type kind struct {
	name   string
	config func(typ string) (func() any, bool)
	names  func() []string
}

// decodeEntry decodes one entry of a plugin section: the engine's keys into
// entry, the rest into the plugin's config (returned). With an unknown type
// only the entry's name is read (into name, if not nil), so that later
// checks can still refer to it.
func decodeEntry(d *decoder, item *yaml.Node, path string, k kind, entry any, name *string) any {
	typ := typeOf(d, item, path)
	targets := []reflect.Value{reflect.ValueOf(entry).Elem()}
	var plugin any
	if typ != "" {
		mk, ok := k.config(typ)
		if !ok {
			d.fail(find(item, "type"), path+".type", "unknown %s type %q%s (known: %s)", k.name, typ, suggest(typ, k.names()), strings.Join(k.names(), ", "))
			if name != nil {
				*name = scalar(item, "name")
			}
			return nil
		}
		plugin = mk()
		targets = append(targets, reflect.ValueOf(plugin).Elem())
	}
	d.decodeMapping(item, path, targets, nil)
	return plugin
}

func decodeList[T any](d *decoder, n *yaml.Node, key string, one func(*yaml.Node, string) T) []T {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.fail(n, key, "expected a list, got %s", kindName(n))
		return nil
	}
	out := make([]T, 0, len(n.Content))
	for i, item := range n.Content {
		out = append(out, one(resolve(item), fmt.Sprintf("%s[%d]", key, i)))
	}
	return out
}

// scalar returns the text of a scalar key of an entry ("" if absent).
func scalar(item *yaml.Node, key string) string {
	if n := find(item, key); n != nil && n.Kind == yaml.ScalarNode {
		return n.Value
	}
	return ""
}

func typeOf(d *decoder, item *yaml.Node, path string) string {
	t := find(item, "type")
	if t == nil {
		d.fail(item, path, "missing key \"type\"")
		return ""
	}
	if t.Kind != yaml.ScalarNode {
		d.fail(t, path+".type", "expected a string, got %s", kindName(t))
		return ""
	}
	return t.Value
}

// check validates what decoding alone cannot: names, plugin configs,
// expressions.
func (c *Config) check(reg *plugins.Registry, errs *Errors) {
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs.add(lineOf(c.root, "log_level"), "log_level", fmt.Sprintf("must be debug, info, warn or error, not %q", c.LogLevel))
	}
	if c.API.Address != "" {
		if _, err := checkAddress(c.API.Address); err != nil {
			errs.add(lineOf(c.root, "api.address"), "api.address", err.Error())
		}
	}
	if err := checkAdmin(c.API.Admin); err != nil {
		errs.add(lineOf(c.root, "api.admin"), "api.admin", err.Error())
	}
	c.checkParsers(reg, errs)
	names := map[string]bool{}
	first := map[string]int{} // section/name → line of its first use
	for i := range c.Inputs {
		in := &c.Inputs[i]
		path := fmt.Sprintf("inputs[%d]", i)
		if in.Name == "" {
			errs.add(in.node.Line, path+".name", "an input needs a name")
		} else if names[in.Name] {
			errs.add(lineOf(in.node, "name"), path+".name", fmt.Sprintf("duplicate input name %q%s", in.Name, errs.firstAt(first["i/"+in.Name])))
		} else if !validName.MatchString(in.Name) {
			// It names the checkpoint file: "a/b" and "a_b" would share one.
			errs.add(lineOf(in.node, "name"), path+".name", fmt.Sprintf("%q: use letters, digits, '-' and '_' (it names the checkpoint file)", in.Name))
		}
		if !names[in.Name] {
			first["i/"+in.Name] = lineOf(in.node, "name")
		}
		names[in.Name] = true
		if in.Plugin != nil {
			c.pluginError(errs, in.node, path, validate(in.Plugin))
		}
		in.Parser = build.Resolve(in.Parser, c.Parsers)
		for _, err := range build.Validate(reg, in.Parser) {
			c.pluginError(errs, in.node, path, err)
		}
	}
	filterNames := map[string]bool{}
	for i := range c.Filters {
		f := &c.Filters[i]
		path := fmt.Sprintf("filters[%d]", i)
		if f.Name != "" {
			if filterNames[f.Name] {
				errs.add(lineOf(f.node, "name"), path+".name", fmt.Sprintf("duplicate filter name %q%s", f.Name, errs.firstAt(first["f/"+f.Name])))
			} else if !validName.MatchString(f.Name) {
				errs.add(lineOf(f.node, "name"), path+".name", fmt.Sprintf("%q: use letters, digits, '-' and '_'", f.Name))
			}
			if !filterNames[f.Name] {
				first["f/"+f.Name] = lineOf(f.node, "name")
			}
			filterNames[f.Name] = true
		}
		if f.When != "" {
			p, err := expression.Compile(f.When, expression.Bool)
			c.pluginError(errs, f.node, path, keyed("when", err))
			f.WhenProgram = p
		}
		if f.Plugin != nil {
			c.pluginError(errs, f.node, path, validate(f.Plugin))
		}
	}
	outNames := map[string]bool{}
	for i := range c.Outputs {
		o := &c.Outputs[i]
		path := fmt.Sprintf("outputs[%d]", i)
		if o.Name == "" {
			errs.add(o.node.Line, path+".name", "an output needs a name")
		} else if outNames[o.Name] {
			errs.add(lineOf(o.node, "name"), path+".name", fmt.Sprintf("duplicate output name %q%s", o.Name, errs.firstAt(first["o/"+o.Name])))
		} else if !validName.MatchString(o.Name) {
			errs.add(lineOf(o.node, "name"), path+".name", fmt.Sprintf("%q: use letters, digits, '-' and '_' (it names a directory)", o.Name))
		}
		if !outNames[o.Name] {
			first["o/"+o.Name] = lineOf(o.node, "name")
		}
		outNames[o.Name] = true
		if o.Route != "" {
			p, err := expression.Compile(o.Route, expression.Bool)
			c.pluginError(errs, o.node, path, keyed("route", err))
			o.RouteProgram = p
		}
		switch o.Buffer.Type {
		case "", "memory", "disk":
		default:
			errs.add(lineOf(o.node, "buffer.type"), path+".buffer.type", fmt.Sprintf("must be disk or memory, not %q", o.Buffer.Type))
		}
		switch o.Buffer.WhenFull {
		case "block", "drop_newest":
		default:
			errs.add(lineOf(o.node, "buffer.when_full"), path+".buffer.when_full", fmt.Sprintf("must be block or drop_newest, not %q", o.Buffer.WhenFull))
		}
		switch o.Buffer.Compression {
		case "", "none", "zstd":
		default:
			errs.add(lineOf(o.node, "buffer.compression"), path+".buffer.compression", fmt.Sprintf("must be none or zstd, not %q", o.Buffer.Compression))
		}
		if o.Retry.Max < o.Retry.Initial {
			errs.add(lineOf(o.node, "retry.max"), path+".retry.max", "must not be below retry.initial")
		}
		if o.Plugin != nil {
			c.pluginError(errs, o.node, path, validate(o.Plugin))
		}
	}
}

// checkParsers validates the `parsers:` entries: each named once, each a
// field parser.
func (c *Config) checkParsers(reg *plugins.Registry, errs *Errors) {
	var node *yaml.Node
	if c.root != nil {
		node = resolve(find(c.root, "parsers"))
	}
	seen := map[string]bool{}
	for i, n := range c.Parsers {
		item := node
		if item == nil {
			item = &yaml.Node{}
		}
		if node != nil && node.Kind == yaml.SequenceNode && i < len(node.Content) {
			item = resolve(node.Content[i])
		}
		path := fmt.Sprintf("parsers[%d]", i)
		if n.Name != "" && seen[n.Name] {
			errs.add(lineOf(item, "name"), path+".name", fmt.Sprintf("duplicate parser name %q", n.Name))
		}
		seen[n.Name] = true
		for _, err := range build.ValidateNamed(reg, n) {
			key, msg, _ := strings.Cut(err.Error(), ": ")
			errs.add(lineOf(item, key), path+"."+key, msg)
		}
	}
}

var validName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func validate(cfg any) error {
	if v, ok := cfg.(plugins.Validator); ok {
		return v.Validate()
	}
	return nil
}

func keyed(key string, err error) error {
	if err == nil {
		return nil
	}
	return &plugins.KeyError{Key: key, Err: err}
}

func lineOf(n *yaml.Node, key string) int {
	if v := find(n, key); v != nil {
		return v.Line
	}
	return n.Line
}

// pluginError records err about the entry at node/path. A plugins.KeyError
// (possibly several, joined with errors.Join) names the key; the line is the
// key's value line (plus the line inside a multi-line expression).
func (c *Config) pluginError(errs *Errors, node *yaml.Node, path string, err error) {
	if err == nil {
		return
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			c.pluginError(errs, node, path, e)
		}
		return
	}
	line, p, msg := node.Line, path, err.Error()
	var ke *plugins.KeyError
	if errors.As(err, &ke) {
		p = join(path, ke.Key)
		msg = ke.Err.Error()
		if v := find(node, ke.Key); v != nil {
			line = v.Line
			var ce *expression.CompileError
			if errors.As(ke.Err, &ce) && (v.Style == yaml.LiteralStyle || v.Style == yaml.FoldedStyle) {
				line += ce.Line
			}
		}
	}
	errs.add(line, p, msg)
}

// EntryError formats an error found after load (when the engine builds a
// plugin) about inputs[i], filters[i] or outputs[i], with its line.
func (c *Config) EntryError(section string, i int, err error) error {
	var node *yaml.Node
	switch section {
	case "inputs":
		node = c.Inputs[i].node
	case "filters":
		node = c.Filters[i].node
	case "outputs":
		node = c.Outputs[i].node
	}
	errs := &Errors{File: c.File, secrets: c.secrets, files: c.files}
	if node == nil {
		errs.add(0, fmt.Sprintf("%s[%d]", section, i), err.Error())
	} else {
		c.pluginError(errs, node, fmt.Sprintf("%s[%d]", section, i), err)
	}
	return errs.err()
}
