package expression

import (
	"sync/atomic"

	"github.com/expr-lang/expr/ast"

	"github.com/sidelog/sidelog/event"
)

// fastArith is a value of the form `key / n`, `n / key`, `key * n` or
// `n * key` (n an integer or float literal) computed without the VM while
// the field holds an int64, int or float64 (what parsers produce), with
// expr's own result types and conversions: / is always float64(x) /
// float64(y) (runtime.Divide); * of two integers is int(x) * int(y), else
// float64(x) * float64(y) (runtime.Multiply). Other values go to the VM,
// which also reports the errors.
type fastArith struct {
	key       string
	div       bool // '/', else '*'
	constLeft bool // n is the left operand
	isInt     bool // n is an integer literal
	i         int
	f         float64
	// boxed[x] is the value for the integer field value x, boxed once
	// (a value computed from milliseconds repeats; boxing a float64
	// allocates): filled as met, shared by every evaluation.
	boxed [smallInt]atomic.Pointer[any]
}

// smallInt bounds the integer field values whose results fastArith keeps.
const smallInt = 1024

// eval computes the value; ok is false when the field does not hold one
// of the numbers it handles.
func (a *fastArith) eval(e *event.Event) (v any, ok bool) {
	var xi int
	var xf float64
	xInt := false
	switch x := a.field(e).(type) {
	case int64:
		xi, xf, xInt = int(x), float64(x), true
	case int:
		xi, xf, xInt = x, float64(x), true
	case float64:
		xf = x
	default:
		return nil, false
	}
	if xInt && xi >= 0 && xi < smallInt {
		if p := a.boxed[xi].Load(); p != nil {
			return *p, true
		}
		v := a.compute(xi, xf, true)
		a.boxed[xi].Store(&v)
		return v, true
	}
	return a.compute(xi, xf, xInt), true
}

// compute is the value for the field value xi (an integer, xInt) or xf.
func (a *fastArith) compute(xi int, xf float64, xInt bool) any {
	cf := a.f
	if a.isInt {
		cf = float64(a.i)
	}
	if a.div {
		if a.constLeft {
			return cf / xf
		}
		return xf / cf
	}
	if xInt && a.isInt {
		return xi * a.i
	}
	return xf * cf
}

func (a *fastArith) field(e *event.Event) any {
	v, _ := e.Known(a.key)
	return v
}

// fastArithOf recognises the values fastArith computes in a compiled tree.
func fastArithOf(n ast.Node) *fastArith {
	b, ok := n.(*ast.BinaryNode)
	if !ok || (b.Operator != "/" && b.Operator != "*") {
		return nil
	}
	a := &fastArith{div: b.Operator == "/"}
	key, num := b.Left, b.Right
	if _, isID := key.(*ast.IdentifierNode); !isID {
		key, num, a.constLeft = b.Right, b.Left, true
	}
	id, ok := key.(*ast.IdentifierNode)
	if !ok || id.Value == MetaKey || id.Value == "" || id.Value[0] == '$' {
		return nil
	}
	a.key = id.Value
	switch c := num.(type) {
	case *ast.IntegerNode:
		a.isInt, a.i = true, c.Value
	case *ast.FloatNode:
		a.f = c.Value
	default:
		return nil
	}
	return a
}

// fastCmp is a condition `key OP n` or `n OP key` (OP one of < <= > >= ==
// !=, n an integer or float literal) answered without the VM while the
// field holds an int64, int or float64, as expr compares them: two
// integers as int, else both as float64 (runtime.Less and the others).
// Other values go to the VM.
type fastCmp struct {
	key   string
	op    string // with the field on the left
	isInt bool
	i     int
	f     float64
}

func (c *fastCmp) eval(e *event.Event) (result, ok bool) {
	v, _ := e.Known(c.key)
	switch x := v.(type) {
	case int64:
		if c.isInt {
			return cmpOrdered(int(x), c.op, c.i), true
		}
		return cmpOrdered(float64(x), c.op, c.f), true
	case int:
		if c.isInt {
			return cmpOrdered(x, c.op, c.i), true
		}
		return cmpOrdered(float64(x), c.op, c.f), true
	case float64:
		return cmpOrdered(x, c.op, c.f), true
	}
	return false, false
}

func cmpOrdered[T int | float64](x T, op string, y T) bool {
	switch op {
	case "<":
		return x < y
	case "<=":
		return x <= y
	case ">":
		return x > y
	case ">=":
		return x >= y
	case "==":
		return x == y
	}
	return x != y
}

// fastCmpOf recognises the conditions fastCmp answers in a compiled tree.
func fastCmpOf(n ast.Node) *fastCmp {
	b, ok := n.(*ast.BinaryNode)
	if !ok {
		return nil
	}
	flip := map[string]string{"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
	op, known := flip[b.Operator]
	if !known {
		return nil
	}
	key, num := b.Left, b.Right
	if _, isID := key.(*ast.IdentifierNode); isID {
		op = b.Operator
	} else {
		key, num = b.Right, b.Left // n OP key: key flip(OP) n
	}
	id, ok := key.(*ast.IdentifierNode)
	if !ok || id.Value == MetaKey || id.Value == "" || id.Value[0] == '$' {
		return nil
	}
	c := &fastCmp{key: id.Value, op: op}
	switch lit := num.(type) {
	case *ast.IntegerNode:
		c.isInt, c.i, c.f = true, lit.Value, float64(lit.Value)
	case *ast.FloatNode:
		c.f = lit.Value
	default:
		return nil
	}
	return c
}
