// Package fieldpath reads and writes nested record fields named by dotted
// paths ("http.status" is the key status of the object under http).
package fieldpath

import (
	"strings"

	"github.com/sidelog/sidelog/event"
)

// Path is a parsed dotted path.
type Path []string

// Parse splits a dotted path; it refuses empty segments.
func Parse(s string) (Path, bool) {
	if s == "" {
		return nil, false
	}
	p := Path(strings.Split(s, "."))
	for _, seg := range p {
		if seg == "" {
			return nil, false
		}
	}
	return p, true
}

func (p Path) String() string { return strings.Join(p, ".") }

// Get returns the value at p.
func (p Path) Get(m map[string]any) (any, bool) {
	for _, seg := range p[:len(p)-1] {
		next, ok := m[seg].(map[string]any)
		if !ok {
			return nil, false
		}
		m = next
	}
	v, ok := m[p[len(p)-1]]
	return v, ok
}

// Set stores v at p, creating objects on the way; a value on the way that
// is not an object is replaced by one.
func (p Path) Set(m map[string]any, v any) {
	for _, seg := range p[:len(p)-1] {
		next, ok := m[seg].(map[string]any)
		if !ok {
			next = make(map[string]any, 2)
			m[seg] = next
		}
		m = next
	}
	m[p[len(p)-1]] = v
}

// Delete removes the value at p and returns it.
func (p Path) Delete(m map[string]any) (any, bool) {
	for _, seg := range p[:len(p)-1] {
		next, ok := m[seg].(map[string]any)
		if !ok {
			return nil, false
		}
		m = next
	}
	last := p[len(p)-1]
	v, ok := m[last]
	if ok {
		delete(m, last)
	}
	return v, ok
}

// DeepCopy copies objects and arrays so that the copy shares nothing
// mutable with v. It refuses (event.ErrTooDeep) a value nested deeper than
// event.MaxDepth, which a cyclic value (a record that holds itself) always
// is, instead of recursing until the stack overflows.
func DeepCopy(v any) (any, error) {
	return deepCopy(v, 0)
}

func deepCopy(v any, depth int) (any, error) {
	switch t := v.(type) {
	case map[string]any:
		if depth >= event.MaxDepth {
			return nil, event.ErrTooDeep
		}
		c := make(map[string]any, len(t))
		for k, x := range t {
			y, err := deepCopy(x, depth+1)
			if err != nil {
				return nil, err
			}
			c[k] = y
		}
		return c, nil
	case []any:
		if depth >= event.MaxDepth {
			return nil, event.ErrTooDeep
		}
		c := make([]any, len(t))
		for i, x := range t {
			y, err := deepCopy(x, depth+1)
			if err != nil {
				return nil, err
			}
			c[i] = y
		}
		return c, nil
	}
	return v, nil
}
