// Package fieldpath reads and writes nested record fields named by dotted
// paths ("http.status" is the key status of the object under http).
package fieldpath

import "strings"

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
// mutable with v.
func DeepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		c := make(map[string]any, len(t))
		for k, x := range t {
			c[k] = DeepCopy(x)
		}
		return c
	case []any:
		c := make([]any, len(t))
		for i, x := range t {
			c[i] = DeepCopy(x)
		}
		return c
	}
	return v
}
