package config

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sidelog/sidelog/config/units"
)

// decoder decodes yaml nodes into Go values strictly: unknown keys, wrong
// types and bad values are recorded with their line and key path, and
// decoding goes on so that every error is reported at once.
type decoder struct {
	errs *Errors
	// original holds the text of scalars before ${...} substitution, so that
	// errors never print a substituted secret.
	original map[*yaml.Node]string
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	sizeType     = reflect.TypeFor[units.Size]()
	anyType      = reflect.TypeFor[any]()
)

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.errs.add(n.Line, path, fmt.Sprintf(format, args...))
}

// shown is how an error shows a scalar: its text before substitution.
func (d *decoder) shown(n *yaml.Node) string {
	if o, ok := d.original[n]; ok {
		return strconv.Quote(o)
	}
	return strconv.Quote(n.Value)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// fieldsOf maps yaml keys to struct fields, following `yaml:",inline"`.
func fieldsOf(v reflect.Value, into map[string]reflect.Value) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if opts == "inline" || (f.Anonymous && name == "") {
			fv := v.Field(i)
			if fv.Kind() == reflect.Pointer {
				if fv.IsNil() {
					fv.Set(reflect.New(f.Type.Elem()))
				}
				fv = fv.Elem()
			}
			fieldsOf(fv, into)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		into[name] = v.Field(i)
	}
}

// Keys returns the yaml keys a config struct accepts (sorted).
func Keys(v any) []string {
	m := map[string]reflect.Value{}
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer {
		rv = rv.Elem()
	}
	fieldsOf(rv, m)
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// decodeMapping decodes a mapping into several structs that share it: each
// key goes to the first target that has it. skip lists keys handled
// elsewhere.
func (d *decoder) decodeMapping(n *yaml.Node, path string, targets []reflect.Value, skip map[string]bool) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected a mapping, got %s", kindName(n))
		return
	}
	fields := make([]map[string]reflect.Value, len(targets))
	for i, t := range targets {
		fields[i] = map[string]reflect.Value{}
		fieldsOf(t, fields[i])
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == "<<" {
			d.decodeMapping(val, path, targets, skip)
			continue
		}
		key := k.Value
		kp := join(path, key)
		if seen[key] {
			d.fail(k, kp, "duplicate key")
			continue
		}
		seen[key] = true
		if skip[key] {
			continue
		}
		found := false
		for _, f := range fields {
			if fv, ok := f[key]; ok {
				d.decode(val, kp, fv)
				found = true
				break
			}
		}
		if !found {
			var known []string
			for _, f := range fields {
				for name := range f {
					known = append(known, name)
				}
			}
			for s := range skip {
				known = append(known, s)
			}
			d.fail(k, kp, "unknown key%s", suggest(key, known))
		}
	}
}

// suggest names the closest known key, if one is close.
func suggest(key string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if dd := distance(key, k); dd < bestD {
			best, bestD = k, dd
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		return "the scalar " + strconv.Quote(n.Value)
	}
	return "something else"
}

// decode decodes n into v (settable).
func (d *decoder) decode(n *yaml.Node, path string, v reflect.Value) {
	n = resolve(n)
	if n == nil {
		return
	}
	t := v.Type()
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode || isNull(n) {
			d.fail(n, path, "expected a duration such as 250ms or 5s, got %s", kindName(n))
			return
		}
		if n.Value == "0" {
			v.SetInt(0)
			return
		}
		dur, err := time.ParseDuration(n.Value)
		if err != nil || dur < 0 {
			d.fail(n, path, "invalid duration %s (use Go syntax: 250ms, 5s, 1m)", d.shown(n))
			return
		}
		v.SetInt(int64(dur))
		return
	case t == sizeType:
		if n.Kind != yaml.ScalarNode || isNull(n) {
			d.fail(n, path, "expected a size such as 5MiB, got %s", kindName(n))
			return
		}
		s, err := units.ParseSize(n.Value)
		if err != nil {
			d.fail(n, path, "invalid size %s", d.shown(n))
			return
		}
		v.SetInt(int64(s))
		return
	case t == anyType:
		var x any
		if err := n.Decode(&x); err != nil {
			d.fail(n, path, "%v", err)
			return
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if isNull(n) {
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.decode(n, path, v.Elem())
	case reflect.Struct:
		d.decodeMapping(n, path, []reflect.Value{v}, nil)
	case reflect.Slice:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "expected a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, fmt.Sprintf("%s[%d]", path, i), s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.MappingNode || t.Key().Kind() != reflect.String {
			d.fail(n, path, "expected a mapping, got %s", kindName(n))
			return
		}
		m := reflect.MakeMapWithSize(t, len(n.Content)/2)
		seen := make(map[string]bool, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if seen[k.Value] {
				// YAML keeps the last one silently: `set: {a: x, a: y}`
				// would lose x without a word.
				d.fail(k, join(path, k.Value), "duplicate key")
				continue
			}
			seen[k.Value] = true
			ev := reflect.New(t.Elem()).Elem()
			d.decode(n.Content[i+1], join(path, k.Value), ev)
			m.SetMapIndex(reflect.ValueOf(k.Value).Convert(t.Key()), ev)
		}
		v.Set(m)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || isNull(n) {
			d.fail(n, path, "expected a string, got %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.fail(n, path, "expected true or false, got %s", kindName(n))
			return
		}
		v.SetBool(n.Value == "true" || n.Value == "True" || n.Value == "TRUE")
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(n.Value, 0, t.Bits())
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil {
			d.fail(n, path, "expected an integer, got %s", kindName(n))
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		u, err := strconv.ParseUint(n.Value, 0, t.Bits())
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil {
			d.fail(n, path, "expected a non-negative integer, got %s", kindName(n))
			return
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(n.Value, t.Bits())
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!float" && n.Tag != "!!int") || err != nil || math.IsNaN(f) {
			d.fail(n, path, "expected a number, got %s", kindName(n))
			return
		}
		v.SetFloat(f)
	default:
		d.fail(n, path, "cannot decode into %s", t)
	}
}

// find returns the value node at a dotted key path below n (or nil).
func find(n *yaml.Node, key string) *yaml.Node {
	n = resolve(n)
	for _, part := range strings.Split(key, ".") {
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == part {
				next = resolve(n.Content[i+1])
			}
		}
		n = next
	}
	return n
}
