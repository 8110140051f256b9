package expression

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/file"

	"github.com/sidelog/sidelog/event"
)

// Helper functions beyond expr-lang's builtins (lower, upper, trim, split,
// hasPrefix, now, duration, date, string, int, float, fromJSON, len, ...):
//
//	has(level)          true when the record has the field (even if null)
//	has(http.status)    nested: true when http is an object holding status
//	has("http.status")  the same, with the path as a string constant
//	capture(s, "re")    the first capture group of the regular expression
//	                    (the whole match if it has no group), "" if none;
//	                    the pattern must be a string constant and is
//	                    compiled once, at load
//	toJSON(v)           compact JSON (expr's builtin indents)
//
// A call of a function that does not exist is a compile error.

// hasFunc is the internal name has() is rewritten to. It cannot be written
// by users ($ is not an identifier character outside $env).
const hasFunc = "$has"

// customFunctions are the functions registered with expr.Function.
var customFunctions = map[string]bool{hasFunc: true, "capture": true, "toJSON": true}

func functions() []expr.Option {
	return []expr.Option{
		expr.Function(hasFunc, hasField, new(func(map[string]any, ...string) bool)),
		expr.Function("capture", capture, new(func(string, *regexp.Regexp) string)),
		expr.Function("toJSON", toJSON, new(func(any) string)),
	}
}

// hasField is has() after rewriting: params are the env map and the path.
func hasField(params ...any) (any, error) {
	cur, _ := params[0].(map[string]any)
	for i, p := range params[1:] {
		if cur == nil {
			return false, nil
		}
		v, ok := cur[p.(string)]
		if !ok {
			return false, nil
		}
		if i == len(params)-2 {
			return true, nil
		}
		cur, _ = v.(map[string]any)
	}
	return false, nil
}

func capture(params ...any) (any, error) {
	s, _ := params[0].(string)
	re := params[1].(*regexp.Regexp)
	m := re.FindStringSubmatchIndex(s)
	switch {
	case m == nil:
		return "", nil
	case len(m) >= 4 && m[2] >= 0:
		return s[m[2]:m[3]], nil
	case len(m) >= 4:
		return "", nil
	default:
		return s[m[0]:m[1]], nil
	}
}

func toJSON(params ...any) (any, error) {
	if m, ok := params[0].(*event.Meta); ok {
		params[0] = *m
	}
	b, err := json.Marshal(params[0])
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

var metaFields = map[string]bool{"input": true, "path": true, "time": true}

// builtinFields runs after visitor. A bare identifier named like an expr
// builtin (duration, type, date, now, count, max, len, ...) that is not
// called is a record field: it is rewritten to $env["name"], else the
// checker types it as the function (`duration > 5` would not compile, and
// `max + 1` would fail with a message about func types). Called, it stays
// the function: `duration("5s")`.
type builtinFields struct {
	v    *visitor
	user map[*ast.IdentifierNode]bool // the identifiers the user wrote
}

func (b *builtinFields) Visit(node *ast.Node) {
	id, ok := (*node).(*ast.IdentifierNode)
	if !ok {
		return
	}
	if b.user == nil {
		b.user = make(map[*ast.IdentifierNode]bool, len(b.v.idents))
		for _, x := range b.v.idents {
			b.user[x] = true
		}
	}
	if !b.user[id] || b.v.callees[id] || b.v.vars[id.Value] {
		return
	}
	if _, isBuiltin := builtin.Index[id.Value]; !isBuiltin && !customFunctions[id.Value] {
		return
	}
	ast.Patch(node, &ast.MemberNode{Node: &ast.IdentifierNode{Value: "$env"}, Property: &ast.StringNode{Value: id.Value}})
}

// visitor runs over the parsed expression before type checking. It collects
// the record fields the expression reads (so that the parser can fill only
// those), rewrites has() and capture(), and refuses calls of unknown
// functions. Its first error is reported by Compile.
type visitor struct {
	idents   []*ast.IdentifierNode
	callees  map[*ast.IdentifierNode]bool
	handled  map[*ast.IdentifierNode]bool // $env used with a constant key
	vars     map[string]bool
	extra    []string // keys named by has("a.b") or $env["a"]
	meta     bool
	anyField bool
	err      error
}

func newVisitor() *visitor {
	return &visitor{
		callees: map[*ast.IdentifierNode]bool{},
		handled: map[*ast.IdentifierNode]bool{},
		vars:    map[string]bool{},
	}
}

func (v *visitor) fail(n ast.Node, format string, args ...any) {
	if v.err == nil {
		v.err = &file.Error{Location: n.Location(), Message: fmt.Sprintf(format, args...)}
	}
}

func (v *visitor) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		v.idents = append(v.idents, n)
	case *ast.VariableDeclaratorNode:
		v.vars[n.Name] = true
	case *ast.MemberNode:
		if id, ok := n.Node.(*ast.IdentifierNode); ok && id.Value == "$env" {
			if s, ok := n.Property.(*ast.StringNode); ok {
				v.handled[id] = true
				v.extra = append(v.extra, s.Value)
			}
		}
	case *ast.BinaryNode:
		if n.Operator == "in" || n.Operator == "not in" {
			if id, ok := n.Right.(*ast.IdentifierNode); ok && id.Value == "$env" {
				if s, ok := n.Left.(*ast.StringNode); ok {
					v.handled[id] = true
					v.extra = append(v.extra, s.Value)
				}
			}
		}
	case *ast.CallNode:
		id, ok := n.Callee.(*ast.IdentifierNode)
		if !ok {
			return
		}
		v.callees[id] = true
		switch id.Value {
		case "has":
			v.rewriteHas(node, n)
		case "capture":
			v.rewriteCapture(n)
		default:
			if !customFunctions[id.Value] {
				v.fail(n, "unknown function %s", id.Value)
			}
		}
	}
}

// rewriteHas turns has(a.b) into $has($env, "a", "b").
func (v *visitor) rewriteHas(node *ast.Node, n *ast.CallNode) {
	if len(n.Arguments) != 1 {
		v.fail(n, "has takes one field, like has(level) or has(http.status)")
		return
	}
	path, ok := fieldPath(n.Arguments[0])
	if !ok {
		v.fail(n.Arguments[0], "has takes a field name, like has(level), has(http.status) or has(\"http.status\")")
		return
	}
	if path[0] == MetaKey {
		if len(path) == 1 || (len(path) == 2 && metaFields[path[1]]) {
			ast.Patch(node, &ast.BoolNode{Value: true})
			return
		}
		v.fail(n.Arguments[0], "meta has no field %s", strings.Join(path[1:], "."))
		return
	}
	v.extra = append(v.extra, path[0])
	args := make([]ast.Node, 0, len(path)+1)
	args = append(args, &ast.IdentifierNode{Value: "$env"})
	for _, p := range path {
		args = append(args, &ast.StringNode{Value: p})
	}
	ast.Patch(node, &ast.CallNode{Callee: &ast.IdentifierNode{Value: hasFunc}, Arguments: args})
}

// fieldPath reads a field reference: an identifier, a chain of constant
// member accesses on one, or a string constant with dots.
func fieldPath(n ast.Node) ([]string, bool) {
	switch n := n.(type) {
	case *ast.StringNode:
		if n.Value == "" {
			return nil, false
		}
		parts := strings.Split(n.Value, ".")
		for _, p := range parts {
			if p == "" {
				return nil, false
			}
		}
		return parts, true
	case *ast.IdentifierNode:
		if n.Value == "$env" {
			return nil, false
		}
		return []string{n.Value}, true
	case *ast.MemberNode:
		s, ok := n.Property.(*ast.StringNode)
		if !ok {
			return nil, false
		}
		if id, ok := n.Node.(*ast.IdentifierNode); ok && id.Value == "$env" {
			return []string{s.Value}, true
		}
		head, ok := fieldPath(n.Node)
		if !ok {
			return nil, false
		}
		if _, isStr := n.Node.(*ast.StringNode); isStr {
			return nil, false
		}
		return append(head, s.Value), true
	}
	return nil, false
}

// rewriteCapture compiles capture's constant pattern at load.
func (v *visitor) rewriteCapture(n *ast.CallNode) {
	if len(n.Arguments) != 2 {
		v.fail(n, "capture takes a string and a pattern, like capture(message, \"user=(\\\\w+)\")")
		return
	}
	s, ok := n.Arguments[1].(*ast.StringNode)
	if !ok {
		v.fail(n.Arguments[1], "capture's pattern must be a string constant")
		return
	}
	re, err := regexp.Compile(s.Value)
	if err != nil {
		v.fail(s, "%v", err)
		return
	}
	ast.Patch(&n.Arguments[1], &ast.ConstantNode{Value: re})
}

func (v *visitor) usesMeta() bool {
	if v.allKeys() {
		return true
	}
	for _, id := range v.idents {
		if id.Value == MetaKey && !v.vars[MetaKey] {
			return true
		}
	}
	for _, k := range v.extra {
		if k == MetaKey {
			return true
		}
	}
	return false
}

func (v *visitor) allKeys() bool {
	for _, id := range v.idents {
		if id.Value == "$env" && !v.handled[id] {
			return true
		}
	}
	return false
}

func (v *visitor) fieldKeys() []string {
	seen := map[string]bool{MetaKey: true, "$env": true}
	var keys []string
	add := func(k string) {
		if !seen[k] && !v.vars[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for _, id := range v.idents {
		if !v.callees[id] {
			add(id.Value)
		}
	}
	for _, k := range v.extra {
		add(k)
	}
	return keys
}
