package expression

import (
	"strings"

	"github.com/expr-lang/expr"
)

// functionNames lists the helper functions, so that calls are not taken for
// record fields.
var functionNames = map[string]bool{}

func isFunction(name string) bool { return functionNames[name] }

// functions returns the helper functions expressions may call.
func functions() []expr.Option {
	defs := []struct {
		name  string
		fn    func(params ...any) (any, error)
		types []any
	}{
		{"lower", func(p ...any) (any, error) { return strings.ToLower(p[0].(string)), nil }, []any{new(func(string) string)}},
		{"upper", func(p ...any) (any, error) { return strings.ToUpper(p[0].(string)), nil }, []any{new(func(string) string)}},
	}
	opts := make([]expr.Option, 0, len(defs))
	for _, d := range defs {
		functionNames[d.name] = true
		opts = append(opts, expr.Function(d.name, d.fn, d.types...))
	}
	return opts
}
