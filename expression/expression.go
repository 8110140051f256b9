// Package expression compiles and runs the expr-lang expressions of filters,
// routes and templates. Expressions see the record's fields by name and the
// event's metadata under `meta` (meta.input, meta.path, meta.time). They are
// compiled once, at config load; a syntax error or a type error between known
// types stops the load. Fields are schemaless: an expression that is only
// possibly wrong (latency_ms + "x") compiles and fails per record at run time.
package expression

import (
	"fmt"
	"sort"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"

	"github.com/sidelog/sidelog/event"
)

// Kind says what an expression must return.
type Kind int

const (
	// Any: any value (modify's set values, sample/throttle keys).
	Any Kind = iota
	// Bool: a condition (when, route).
	Bool
)

// Program is a compiled expression, safe for concurrent use.
type Program struct {
	src     string
	prog    *vm.Program
	keys    []string
	allKeys bool
	vms     sync.Pool
}

// CompileError is a compile failure with its position in the expression
// (1-based line and column).
type CompileError struct {
	Line, Column int
	Msg          string
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

// keyCollector records the top-level record fields an expression reads.
type keyCollector struct {
	keys map[string]bool
	all  bool
}

func (c *keyCollector) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		if n.Value == "$env" {
			c.all = true
			return
		}
		if n.Value != "meta" {
			c.keys[n.Value] = true
		}
	}
}

// Options are the compile options shared by every expression: the env
// shape and the helper functions.
func Options() []expr.Option {
	opts := []expr.Option{
		expr.Env(map[string]any{"meta": event.Meta{}}),
		expr.AllowUndefinedVariables(),
	}
	return append(opts, functions()...)
}

// Compile compiles src. kind Bool makes a non-boolean result a compile
// error.
func Compile(src string, kind Kind) (*Program, error) {
	kc := &keyCollector{keys: map[string]bool{}}
	opts := append(Options(), expr.Patch(kc))
	if kind == Bool {
		opts = append(opts, expr.AsBool())
	}
	prog, err := expr.Compile(src, opts...)
	if err != nil {
		if fe, ok := err.(*file.Error); ok {
			return nil, &CompileError{Line: fe.Line, Column: fe.Column + 1, Msg: fe.Message}
		}
		return nil, &CompileError{Line: 1, Column: 1, Msg: err.Error()}
	}
	p := &Program{src: src, prog: prog, allKeys: kc.all}
	for k := range kc.keys {
		if !isFunction(k) {
			p.keys = append(p.keys, k)
		}
	}
	sort.Strings(p.keys)
	return p, nil
}

// Source returns the expression's text.
func (p *Program) Source() string { return p.src }

// Keys returns the top-level record fields the expression reads; all is true
// when it may read any field.
func (p *Program) Keys() (keys []string, all bool) { return p.keys, p.allKeys }

// Eval runs the expression against e.
func (p *Program) Eval(e *event.Event) (any, error) {
	fields := e.Fields
	if fields == nil {
		fields = make(map[string]any, 1)
		e.Fields = fields
	}
	old, had := fields["meta"]
	fields["meta"] = event.Meta{Input: e.Input, Path: e.Path, Time: e.Time}
	m, _ := p.vms.Get().(*vm.VM)
	if m == nil {
		m = &vm.VM{}
	}
	out, err := m.Run(p.prog, fields)
	p.vms.Put(m)
	if had {
		fields["meta"] = old
	} else {
		delete(fields, "meta")
	}
	return out, err
}

// Bool runs a condition. A run-time error yields false and the error.
func (p *Program) Bool(e *event.Event) (bool, error) {
	out, err := p.Eval(e)
	if err != nil {
		return false, err
	}
	b, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("expression returned %T, not bool", out)
	}
	return b, nil
}
