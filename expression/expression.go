// Package expression compiles and runs the expr-lang expressions of filters,
// routes and templates. Expressions see the record's fields by name and the
// event's metadata under `meta` (meta.input, meta.path, meta.time). They are
// compiled once, at config load; a syntax error, a type error between known
// types, a call of an unknown function or a wrong call of a known one stops
// the load. Fields are schemaless: an expression that is only possibly wrong
// (latency_ms + "x") compiles and fails per record at run time.
//
// A compiled Program is safe for concurrent use. Evaluating it does not
// rebuild an environment: the record's own field map is the environment,
// and `meta` is put into it (as a pointer to a pooled struct, so without an
// allocation) only for the duration of the call, and only when the
// expression reads `meta`.
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

// MetaKey is the name under which expressions see the event's metadata.
const MetaKey = "meta"

// Program is a compiled expression, safe for concurrent use.
type Program struct {
	src      string
	prog     *vm.Program
	keys     []string
	allKeys  bool
	usesMeta bool
	envOut   bool
	states   sync.Pool // *state
	// fast, when set, answers a condition of the form `key == "s"`,
	// `key != "s"` or `key in ["s", ...]` without the VM while the field
	// holds a string (see fastCond).
	fast *fastCond
	// arith, when set, computes a value of the form `key / n` or
	// `key * n` without the VM while the field holds a number (see
	// fastArith).
	arith *fastArith
	// cmp, when set, answers a condition of the form `key >= n` (< <= >
	// >= == !=) without the VM while the field holds a number (fastCmp).
	cmp *fastCmp
}

// fastCond is a condition that compares one field with string constants.
type fastCond struct {
	key    string
	one    string              // ==, !=
	set    map[string]struct{} // in (expr's optimiser made the array a set)
	list   []string            // in, a small set: compared one by one
	negate bool                // !=
}

// eval answers the condition when the field holds a string; ok is false
// otherwise (absent, nil, another type: the VM decides, with expr's own
// rules for comparing across types).
func (f *fastCond) eval(e *event.Event) (result, ok bool) {
	v, _ := e.Known(f.key)
	s, ok := v.(string)
	if !ok {
		return false, false
	}
	if f.list != nil {
		for _, x := range f.list {
			if x == s {
				return true, true
			}
		}
		return false, true
	}
	if f.set != nil {
		_, in := f.set[s]
		return in, true
	}
	return (s == f.one) != f.negate, true
}

// fastCondOf recognises the conditions fastCond answers in a compiled tree.
// A set of up to 8 strings is compared one by one, faster than hashing.
func fastCondOf(n ast.Node) *fastCond {
	f := fastCondOfTree(n)
	if f != nil && f.set != nil && len(f.set) <= 8 {
		f.list = make([]string, 0, len(f.set))
		for s := range f.set {
			f.list = append(f.list, s)
		}
	}
	return f
}

func fastCondOfTree(n ast.Node) *fastCond {
	b, ok := n.(*ast.BinaryNode)
	if !ok {
		return nil
	}
	field := func(n ast.Node) (string, bool) {
		id, ok := n.(*ast.IdentifierNode)
		if !ok || id.Value == MetaKey || id.Value == "" || id.Value[0] == '$' {
			return "", false
		}
		return id.Value, true
	}
	switch b.Operator {
	case "==", "!=":
		key, ok := field(b.Left)
		lit, ok2 := b.Right.(*ast.StringNode)
		if !ok || !ok2 {
			key, ok = field(b.Right)
			lit, ok2 = b.Left.(*ast.StringNode)
		}
		if !ok || !ok2 {
			return nil
		}
		return &fastCond{key: key, one: lit.Value, negate: b.Operator == "!="}
	case "in":
		key, ok := field(b.Left)
		if !ok {
			return nil
		}
		switch r := b.Right.(type) {
		case *ast.ConstantNode:
			if set, ok := r.Value.(map[string]struct{}); ok {
				return &fastCond{key: key, set: set}
			}
		case *ast.ArrayNode:
			set := make(map[string]struct{}, len(r.Nodes))
			for _, el := range r.Nodes {
				lit, ok := el.(*ast.StringNode)
				if !ok {
					return nil
				}
				set[lit.Value] = struct{}{}
			}
			return &fastCond{key: key, set: set}
		}
	}
	return nil
}

// state is what one evaluation needs besides the record: a VM (its stack is
// reused) and the meta struct that the record's map points to meanwhile.
type state struct {
	vm   vm.VM
	meta event.Meta
	// env is the environment of a record whose fields the event keeps
	// without a map (event.AddField): they are copied in for the call and
	// cleared after it.
	env map[string]any
}

// CompileError is a compile failure with its position in the expression
// (1-based line and column, counted in characters).
type CompileError struct {
	Line, Column int
	Msg          string
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

// Options are the compile options shared by every expression: the env
// shape and the helper functions.
func Options() []expr.Option {
	opts := []expr.Option{
		expr.Env(map[string]any{MetaKey: &event.Meta{}}),
		expr.AllowUndefinedVariables(),
	}
	return append(opts, functions()...)
}

// Compile compiles src. kind Bool makes a non-boolean result a compile
// error. Errors are *CompileError.
func Compile(src string, kind Kind) (*Program, error) {
	v := newVisitor()
	opts := append(Options(), expr.Patch(v), expr.Patch(&builtinFields{v: v}))
	if kind == Bool {
		opts = append(opts, expr.AsBool())
	}
	prog, err := expr.Compile(src, opts...)
	if v.err != nil { // more precise than what the checker says after it
		err = v.err
	}
	if err != nil {
		return nil, toCompileError(src, err)
	}
	p := &Program{src: src, prog: prog, allKeys: v.allKeys(), usesMeta: v.usesMeta(),
		envOut: returnsEnv(prog.Node(), nil)}
	p.keys = v.fieldKeys()
	sort.Strings(p.keys)
	if kind == Bool && !p.usesMeta && !p.allKeys {
		p.fast = fastCondOf(prog.Node())
		if p.fast == nil {
			p.cmp = fastCmpOf(prog.Node())
		}
	}
	if kind == Any && !p.usesMeta && !p.allKeys {
		p.arith = fastArithOf(prog.Node())
	}
	return p, nil
}

// MustCompile is Compile for tests and constants: it panics on error.
func MustCompile(src string, kind Kind) *Program {
	p, err := Compile(src, kind)
	if err != nil {
		panic(fmt.Sprintf("expression %q: %v", src, err))
	}
	return p
}

func toCompileError(src string, err error) *CompileError {
	if fe, ok := err.(*file.Error); ok {
		if fe.Line == 0 { // not bound to the source yet
			fe = fe.Bind(file.NewSource(src))
		}
		line := fe.Line
		if line == 0 {
			line = 1
		}
		return &CompileError{Line: line, Column: fe.Column + 1, Msg: fe.Message}
	}
	return &CompileError{Line: 1, Column: 1, Msg: err.Error()}
}

// Source returns the expression's text.
func (p *Program) Source() string { return p.src }

// Keys returns the top-level record fields the expression reads; all is true
// when it may read any field (it uses $env as a whole). `meta` is not a
// record field and is never listed.
func (p *Program) Keys() (keys []string, all bool) { return p.keys, p.allKeys }

// ReturnsEnv reports whether the expression's value is, or holds, the
// record's own map ($env, [$env], {"r": $env}, cond ? $env : nil, ...), as
// far as can be known before running it. Storing such a value into the
// record makes it hold itself.
func (p *Program) ReturnsEnv() bool { return p.envOut }

// returnsEnv walks the nodes that pass a value through to the result;
// envVars are the let-variables bound to such a value.
func returnsEnv(n ast.Node, envVars map[string]bool) bool {
	switch n := n.(type) {
	case *ast.IdentifierNode:
		return n.Value == "$env" || envVars[n.Value]
	case *ast.ConditionalNode:
		return returnsEnv(n.Exp1, envVars) || returnsEnv(n.Exp2, envVars)
	case *ast.BinaryNode:
		return n.Operator == "??" && (returnsEnv(n.Left, envVars) || returnsEnv(n.Right, envVars))
	case *ast.ArrayNode:
		for _, el := range n.Nodes {
			if returnsEnv(el, envVars) {
				return true
			}
		}
	case *ast.MapNode:
		for _, el := range n.Pairs {
			if returnsEnv(el, envVars) {
				return true
			}
		}
	case *ast.PairNode:
		return returnsEnv(n.Value, envVars)
	case *ast.VariableDeclaratorNode:
		if returnsEnv(n.Value, envVars) {
			inner := map[string]bool{n.Name: true}
			for k := range envVars {
				inner[k] = true
			}
			envVars = inner
		}
		return returnsEnv(n.Expr, envVars)
	case *ast.SequenceNode:
		if len(n.Nodes) > 0 {
			return returnsEnv(n.Nodes[len(n.Nodes)-1], envVars)
		}
	}
	return false
}

// UsesMeta reports whether the expression reads `meta`.
func (p *Program) UsesMeta() bool { return p.usesMeta }

// Eval runs the expression against e. It reads e.Fields as they are (a
// partial map holds every key that Keys names). A record field named "meta"
// is hidden by the metadata while an expression that reads `meta` runs.
func (p *Program) Eval(e *event.Event) (any, error) {
	if p.arith != nil {
		if v, ok := p.arith.eval(e); ok {
			return v, nil
		}
	}
	st, _ := p.states.Get().(*state)
	if st == nil {
		st = new(state)
	}
	fields := e.Fields
	scratch := false
	switch {
	case fields != nil:
	case !e.HasFields():
		fields = make(map[string]any, 1)
		e.Fields = fields
	case p.allKeys || p.envOut:
		// $env sees (or is) the record's own map
		fields = e.KnownFields()
	default:
		// the fields the event keeps without a map: lent to the VM in
		// the state's map for this call (the value cannot be the map:
		// envOut is not set)
		if st.env == nil {
			st.env = make(map[string]any, 8)
		}
		fields, scratch = st.env, true
		e.CopyKnown(fields)
	}
	if !p.usesMeta {
		out, err := st.vm.Run(p.prog, fields)
		if scratch {
			clear(fields)
		}
		p.states.Put(st)
		return out, err
	}
	st.meta = event.Meta{Input: e.Input, Path: e.Path, Time: e.Time}
	old, had := fields[MetaKey]
	fields[MetaKey] = &st.meta
	out, err := st.vm.Run(p.prog, fields)
	if scratch {
		clear(fields)
	} else if had {
		fields[MetaKey] = old
	} else {
		delete(fields, MetaKey)
	}
	if out == any(&st.meta) { // the expression returned meta itself
		m := st.meta
		out = &m
	}
	st.meta = event.Meta{}
	p.states.Put(st)
	return out, err
}

// Bool runs a condition. A run-time error yields false and the error.
func (p *Program) Bool(e *event.Event) (bool, error) {
	if p.fast != nil {
		if b, ok := p.fast.eval(e); ok {
			return b, nil
		}
	} else if p.cmp != nil {
		if b, ok := p.cmp.eval(e); ok {
			return b, nil
		}
	}
	out, err := p.Eval(e)
	if err != nil {
		return false, err
	}
	b, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("expression %q returned %T, not bool", p.src, out)
	}
	return b, nil
}
