// Package plugins holds the registry of inputs, parsers, filters and outputs.
//
// Each plugin registers itself by name in an init function; plugins/all
// imports every built-in plugin. A duplicate name panics at start-up. Tests
// that need their own plugins build an isolated Registry with New.
package plugins

import (
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"github.com/sidelog/sidelog/filter"
	"github.com/sidelog/sidelog/input"
	"github.com/sidelog/sidelog/output"
	"github.com/sidelog/sidelog/parser"
)

// Validator is implemented by plugin configs that check themselves at load.
// Config structs are decoded strictly from YAML first; Validate checks what
// the types alone cannot (ranges, combinations).
type Validator interface {
	Validate() error
}

// Input describes an input plugin.
type Input struct {
	// Config returns a pointer to a config struct holding the defaults.
	Config func() any
	// New builds the input from a decoded, validated config.
	New func(cfg any, env input.Env) (input.Input, error)
}

// Parser describes a parser plugin. New returns the stateless parser and,
// when the format needs per-file state (container framing), an assembler
// factory; the engine adds multiline on top.
type Parser struct {
	New func(cfg parser.Config, env ParserEnv) (parser.Parser, func() parser.Assembler, error)
}

// ParserEnv is what a parser gets besides its config.
type ParserEnv struct {
	MaxLineBytes int
	// Lookup finds another parser (for inner_parser).
	Lookup func(name string) (Parser, bool)
}

// FilterEnv is what a filter gets when it is built.
type FilterEnv struct {
	// ID names the filter in logs and metrics, e.g. "filters[2].modify".
	ID     string
	Logger *slog.Logger
}

// Filter describes a filter plugin.
type Filter struct {
	Config func() any
	New    func(cfg any, env FilterEnv) (filter.Filter, error)
}

// OutputEnv is what an output gets when it is built.
type OutputEnv struct {
	Name       string
	DataDir    string
	InstanceID string // stable per data_dir, for document ids
	Hostname   string
	Version    string // the agent's version (ECS agent.version)
	Logger     *slog.Logger
}

// Output describes an output plugin.
type Output struct {
	Config func() any
	New    func(cfg any, env OutputEnv) (output.Output, error)
}

// Registry maps names to plugins of each stage.
type Registry struct {
	mu      sync.RWMutex
	inputs  map[string]Input
	parsers map[string]Parser
	filters map[string]Filter
	outputs map[string]Output
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{
		inputs:  map[string]Input{},
		parsers: map[string]Parser{},
		filters: map[string]Filter{},
		outputs: map[string]Output{},
	}
}

// Default is the registry that built-in plugins register into.
var Default = New()

func add[T any](r *Registry, m map[string]T, kind, name string, p T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := m[name]; dup {
		panic(fmt.Sprintf("plugins: %s %q registered twice", kind, name))
	}
	m[name] = p
}

func get[T any](r *Registry, m map[string]T, name string) (T, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := m[name]
	return p, ok
}

func names[T any](r *Registry, m map[string]T) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (r *Registry) AddInput(name string, p Input)   { add(r, r.inputs, "input", name, p) }
func (r *Registry) AddParser(name string, p Parser) { add(r, r.parsers, "parser", name, p) }
func (r *Registry) AddFilter(name string, p Filter) { add(r, r.filters, "filter", name, p) }
func (r *Registry) AddOutput(name string, p Output) { add(r, r.outputs, "output", name, p) }

func (r *Registry) Input(name string) (Input, bool)   { return get(r, r.inputs, name) }
func (r *Registry) Parser(name string) (Parser, bool) { return get(r, r.parsers, name) }
func (r *Registry) Filter(name string) (Filter, bool) { return get(r, r.filters, name) }
func (r *Registry) Output(name string) (Output, bool) { return get(r, r.outputs, name) }

func (r *Registry) InputNames() []string  { return names(r, r.inputs) }
func (r *Registry) ParserNames() []string { return names(r, r.parsers) }
func (r *Registry) FilterNames() []string { return names(r, r.filters) }
func (r *Registry) OutputNames() []string { return names(r, r.outputs) }

// RegisterInput adds an input to the default registry.
func RegisterInput(name string, p Input) { Default.AddInput(name, p) }

// RegisterParser adds a parser to the default registry.
func RegisterParser(name string, p Parser) { Default.AddParser(name, p) }

// RegisterFilter adds a filter to the default registry.
func RegisterFilter(name string, p Filter) { Default.AddFilter(name, p) }

// RegisterOutput adds an output to the default registry.
func RegisterOutput(name string, p Output) { Default.AddOutput(name, p) }

// KeyError names the key of a plugin's config that an error is about, so the
// config loader can print the key's file line and path
// ("sidelog.yaml:14: filters[1].set.env: ..."). Key is relative to the
// plugin's mapping and may be dotted ("set.env", "tls.ca_file").
type KeyError struct {
	Key string
	Err error
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *KeyError) Unwrap() error { return e.Err }

// KeyUser is implemented by filters and outputs that read record fields
// directly (not through Raw): Keys returns the top-level fields they read, or
// all=true. The engine tells the parser, which may then parse only those
// keys. A filter or output that does not implement KeyUser is assumed to
// read every field.
type KeyUser interface {
	Keys() (keys []string, all bool)
}
