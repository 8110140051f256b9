// Package modify is the filter that sets, renames, removes and copies
// record fields. Keys may be dotted paths into nested objects ("http.status").
//
// Every `set` expression is evaluated first, against the record as it came
// in; if one fails at run time the record goes on unchanged and the error is
// counted. Then the operations apply in this order: copy, rename, set,
// remove. Within one operation keys apply in sorted order.
package modify

import (
	"errors"
	"fmt"
	"sort"
	"sync/atomic"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/expression"
	"github.com/sidelog/sidelog/filter"
	"github.com/sidelog/sidelog/filter/internal/fieldpath"
	"github.com/sidelog/sidelog/plugins"
)

// Config is the modify filter's configuration.
type Config struct {
	// Set maps a field to an expression whose value it receives.
	Set map[string]string `yaml:"set"`
	// Rename maps an existing field to its new name.
	Rename map[string]string `yaml:"rename"`
	// Remove lists fields to delete.
	Remove []string `yaml:"remove"`
	// Copy maps an existing field to the field that receives a copy.
	Copy map[string]string `yaml:"copy"`
}

// Plugin is the registry entry.
var Plugin = plugins.Filter{
	Config: func() any { return &Config{} },
	New:    func(cfg any, _ plugins.FilterEnv) (filter.Filter, error) { return New(cfg.(*Config)) },
}

func init() { plugins.RegisterFilter("modify", Plugin) }

// Validate checks every path and compiles every expression.
func (c *Config) Validate() error {
	_, err := New(c)
	return err
}

type setOp struct {
	path fieldpath.Path
	prog *expression.Program
}

type moveOp struct{ from, to fieldpath.Path }

// Modify is the built filter.
type Modify struct {
	set    []setOp
	rename []moveOp
	copy   []moveOp
	remove []fieldpath.Path
	keys   []string
	// flat: every path is one top-level key, so Apply changes the record
	// through e.SetField/e.DeleteField (an overlay on a raw JSON record)
	// instead of completing and rewriting the whole map.
	flat   bool
	errors atomic.Int64
	values valuePool
}

// New builds the filter; errors are *plugins.KeyError (joined).
func New(c *Config) (*Modify, error) {
	var errs []error
	m := &Modify{}
	path := func(key, s string) fieldpath.Path {
		p, ok := fieldpath.Parse(s)
		if !ok {
			errs = append(errs, &plugins.KeyError{Key: key, Err: fmt.Errorf("invalid field path %q", s)})
		}
		return p
	}
	moves := func(section string, in map[string]string) []moveOp {
		var out []moveOp
		for _, from := range sortedKeys(in) {
			f := path(section+"."+from, from)
			t := path(section+"."+from, in[from])
			if f != nil && t != nil {
				out = append(out, moveOp{f, t})
			}
		}
		return out
	}
	keys := map[string]bool{}
	for _, k := range sortedKeys(c.Set) {
		p := path("set."+k, k)
		prog, err := expression.Compile(c.Set[k], expression.Any)
		if err != nil {
			errs = append(errs, &plugins.KeyError{Key: "set." + k, Err: err})
			continue
		}
		if prog.ReturnsEnv() {
			errs = append(errs, &plugins.KeyError{Key: "set." + k, Err: fmt.Errorf(
				"%q stores the record into one of its own fields (a cycle no output can write); "+
					"name the fields you want, e.g. {a: a, b: b}, or store text with toJSON($env)", c.Set[k])})
			continue
		}
		if p == nil {
			continue
		}
		ks, all := prog.Keys()
		if all {
			keys["*"] = true
		}
		for _, x := range ks {
			keys[x] = true
		}
		m.set = append(m.set, setOp{p, prog})
	}
	m.copy = moves("copy", c.Copy)
	m.rename = moves("rename", c.Rename)
	for i, r := range c.Remove {
		if p := path(fmt.Sprintf("remove[%d]", i), r); p != nil {
			m.remove = append(m.remove, p)
		}
	}
	if len(c.Set)+len(c.Rename)+len(c.Remove)+len(c.Copy) == 0 {
		errs = append(errs, errors.New("modify needs at least one of set, rename, remove, copy"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m.flat = true
	for _, op := range m.set {
		m.flat = m.flat && len(op.path) == 1
	}
	for _, op := range append(m.copy[:len(m.copy):len(m.copy)], m.rename...) {
		m.flat = m.flat && len(op.from) == 1 && len(op.to) == 1
	}
	for _, p := range m.remove {
		m.flat = m.flat && len(p) == 1
	}
	if m.flat {
		// Copy and rename read their sources: have the parser select them
		// so that e.Field finds them without completing the record.
		for _, op := range append(m.copy[:len(m.copy):len(m.copy)], m.rename...) {
			keys[op.from[0]] = true
		}
		// The keys set, copied or renamed to: the parser then says which
		// of them the line lacks (event.SetSelection), and writing a
		// new one need not look for it in the raw line.
		for _, op := range m.set {
			keys[op.path[0]] = true
		}
		for _, op := range append(m.copy[:len(m.copy):len(m.copy)], m.rename...) {
			keys[op.to[0]] = true
		}
	}
	for k := range keys {
		m.keys = append(m.keys, k)
	}
	sort.Strings(m.keys)
	return m, nil
}

// ownValue returns v, or a deep copy of it when it is an object or array
// (which may share maps with the record); event.ErrTooDeep when it is
// nested deeper than event.MaxDepth or cyclic.
func ownValue(v any) (any, error) {
	switch v.(type) {
	case map[string]any, []any:
		return fieldpath.DeepCopy(v)
	}
	return v, nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Apply modifies e. It never drops.
func (m *Modify) Apply(e *event.Event) bool {
	var vals []any
	var buf *[]any
	var small [4]any // the usual few set values: on the stack
	if len(m.set) > 0 {
		if len(m.set) <= len(small) {
			vals = small[:len(m.set)]
		} else {
			buf = m.values.get(len(m.set))
			vals = *buf
		}
		for i, s := range m.set {
			v, err := s.prog.Eval(e)
			if err == nil {
				// An object or array may be (part of) the record itself
				// ($env, a parent of the target path): store a copy so
				// that the record never holds itself.
				v, err = ownValue(v)
			}
			if err != nil {
				m.errors.Add(1)
				if buf != nil {
					m.values.put(buf)
				}
				return true // unchanged
			}
			vals[i] = v
		}
	}
	if m.flat {
		m.applyFlat(e, vals)
	} else {
		m.applyPaths(e, vals)
	}
	if buf != nil {
		m.values.put(buf)
	}
	return true
}

// applyFlat changes top-level keys one by one: on a raw JSON record they go
// to the event's overlay and the rest of the line is never built.
func (m *Modify) applyFlat(e *event.Event, vals []any) {
	for _, c := range m.copy {
		if v, ok := e.Field(c.from[0]); ok {
			if v, err := fieldpath.DeepCopy(v); err == nil {
				e.SetField(c.to[0], v)
			} else {
				m.errors.Add(1)
			}
		}
	}
	for _, r := range m.rename {
		if v, ok := e.Field(r.from[0]); ok {
			e.DeleteField(r.from[0])
			e.SetField(r.to[0], v)
		}
	}
	for i, s := range m.set {
		e.SetField(s.path[0], vals[i])
	}
	for _, r := range m.remove {
		e.DeleteField(r[0])
	}
}

// applyPaths changes nested paths in the completed map.
func (m *Modify) applyPaths(e *event.Event, vals []any) {
	f := e.Mutable()
	for _, c := range m.copy {
		if v, ok := c.from.Get(f); ok {
			if v, err := fieldpath.DeepCopy(v); err == nil {
				c.to.Set(f, v)
			} else {
				m.errors.Add(1)
			}
		}
	}
	for _, r := range m.rename {
		if v, ok := r.from.Delete(f); ok {
			r.to.Set(f, v)
		}
	}
	for i, s := range m.set {
		s.path.Set(f, vals[i])
	}
	for _, r := range m.remove {
		r.Delete(f)
	}
}

// Keys returns the fields the set expressions read, and the sources and
// targets of copy and rename and the keys set when every path is a
// top-level key. With a nested path Apply completes the record before
// changing it, so those need no key.
func (m *Modify) Keys() ([]string, bool) {
	for _, k := range m.keys {
		if k == "*" {
			return nil, true
		}
	}
	return m.keys, false
}

// Counters implements filter.Counter: "errors" counts records passed on
// unchanged because a set expression failed or produced a value nested
// deeper than event.MaxDepth, and copies skipped for that reason.
func (m *Modify) Counters() []filter.Count {
	return []filter.Count{{Name: "errors", Value: m.errors.Load()}}
}
