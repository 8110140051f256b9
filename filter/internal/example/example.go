// Package example helps the filters' tests: it loads a filter's
// example.yaml through the real config loader, builds the filters the way
// the engine does, and runs records through them with the engine's `when`
// semantics.
package example

import (
	"context"
	"fmt"
	"os"

	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/expression"
	"github.com/sidelog/sidelog/filter"
	"github.com/sidelog/sidelog/input"
	"github.com/sidelog/sidelog/output"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/plugins"
)

type nopOut struct{}

func (nopOut) Encode(d []byte, _ *event.Event) ([]byte, error) { return d, nil }
func (nopOut) Write(context.Context, [][]byte) error           { return nil }
func (nopOut) Close(context.Context) error                     { return nil }

// Registry returns a registry holding the given filters a stub input and
// output, both of type "stub", and a stub parser "json".
func Registry(filters map[string]plugins.Filter) *plugins.Registry {
	r := plugins.New()
	r.AddInput("stub", plugins.Input{Config: func() any { return &struct{}{} },
		New: func(any, input.Env) (input.Input, error) { return nil, nil }})
	r.AddParser("json", plugins.Parser{New: func(parser.Config, plugins.ParserEnv) (parser.Parser, func() parser.Assembler, error) {
		return nil, nil, nil
	}})
	r.AddOutput("stub", plugins.Output{Config: func() any { return &struct{}{} },
		New: func(any, plugins.OutputEnv) (output.Output, error) { return nopOut{}, nil }})
	for name, p := range filters {
		r.AddFilter(name, p)
	}
	return r
}

const stubs = "\ninputs: [{name: app, type: stub}]\noutputs: [{name: out, type: stub}]\n"

// Parse loads a config made of filtersYAML (a document with a `filters:`
// list, like a plugin's example.yaml) plus a stub input and output.
func Parse(name, filtersYAML string, reg *plugins.Registry) (*config.Config, error) {
	return config.Parse(name, []byte(filtersYAML+stubs), reg)
}

// ParseFile is Parse of a file.
func ParseFile(path string, reg *plugins.Registry) (*config.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, string(b), reg)
}

// Stage is one built filter with its `when`.
type Stage struct {
	When   *expression.Program
	Filter filter.Filter
	Errors int64 // run-time errors of `when` counted by the engine
	taken  bool
}

// Chain is a built filter chain.
type Chain []*Stage

// Build builds every filter of cfg as the engine does.
func Build(cfg *config.Config, reg *plugins.Registry) (Chain, error) {
	var c Chain
	for i, fc := range cfg.Filters {
		p, _ := reg.Filter(fc.Type)
		f, err := p.New(fc.Plugin, plugins.FilterEnv{ID: fmt.Sprintf("filters[%d].%s", i, fc.Type)})
		if err != nil {
			return nil, cfg.EntryError("filters", i, err)
		}
		s := &Stage{When: fc.WhenProgram, Filter: f}
		if wt, ok := f.(filter.WhenTaker); ok {
			if err := wt.TakeWhen(fc.WhenProgram); err != nil {
				return nil, cfg.EntryError("filters", i, err)
			}
			s.taken = true
		}
		c = append(c, s)
	}
	return c, nil
}

// Apply runs e through the chain; false: dropped.
func (c Chain) Apply(e *event.Event) bool {
	for _, s := range c {
		if s.When != nil && !s.taken {
			ok, err := s.When.Bool(e)
			if err != nil {
				s.Errors++
				continue
			}
			if !ok {
				continue
			}
		}
		if !s.Filter.Apply(e) {
			return false
		}
	}
	return true
}

// Count returns the named counter of a filter (0 when it has none).
func Count(f filter.Filter, name string) int64 {
	c, ok := f.(filter.Counter)
	if !ok {
		return 0
	}
	for _, x := range c.Counters() {
		if x.Name == name {
			return x.Value
		}
	}
	return 0
}
