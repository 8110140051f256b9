// Package template renders the small templates that outputs use for names
// taken from records: an Elasticsearch index such as
// `app-{{ service }}-%Y.%m.%d`, a Datadog service such as `{{ service }}`.
//
// Syntax:
//
//   - `{{ path }}` is replaced by the value of a record field. path is a field
//     name or a dotted path into nested objects (`kubernetes.namespace`). A
//     key that itself holds dots (`{"kubernetes.namespace": "x"}`) is found
//     too when the nested lookup finds nothing.
//   - `{{ path ?? "fallback" }}` renders fallback when the field is missing,
//     null, an empty string or not a scalar (like the `??` of expr-lang);
//     single quotes work too.
//   - `%Y %y %m %d %H %M %S %j %s` are strftime directives of the event time
//     in UTC (year, two-digit year, month, day, hour, minute, second, day of
//     the year, Unix seconds); `%%` is a literal percent sign.
//   - Everything else is literal.
//
// A missing field (or one that is null, an object or an array) renders as
// the empty string unless a fallback is given. Strings render as they are,
// numbers in their shortest form, booleans as true/false.
//
// A Template is compiled once and is safe for concurrent use; Append
// allocates nothing beyond the growth of dst.
package template

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/sidelog/sidelog/event"
)

type kind uint8

const (
	kLiteral kind = iota
	kField
	kTime
)

type part struct {
	kind     kind
	lit      string   // kLiteral; kField: the fallback
	path     []string // kField: the dotted path split
	dotted   string   // kField: the path as written
	fallback bool     // kField: a fallback was given
	verb     byte     // kTime
}

// Template is a compiled template.
type Template struct {
	src     string
	parts   []part
	keys    []string
	usesTim bool
}

// Compile parses src. Errors name the offending position (1-based byte
// column).
func Compile(src string) (*Template, error) {
	t := &Template{src: src}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, part{kind: kLiteral, lit: lit.String()})
			lit.Reset()
		}
	}
	keys := map[string]bool{}
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '{' && i+1 < len(src) && src[i+1] == '{':
			end := strings.Index(src[i+2:], "}}")
			if end < 0 {
				return nil, fmt.Errorf("template %q: column %d: unclosed {{", src, i+1)
			}
			p, err := parseField(src[i+2 : i+2+end])
			if err != nil {
				return nil, fmt.Errorf("template %q: column %d: %v", src, i+1, err)
			}
			flush()
			t.parts = append(t.parts, p)
			keys[p.path[0]] = true
			if len(p.path) > 1 {
				keys[p.dotted] = true
			}
			i += 2 + end + 2
		case c == '}' && i+1 < len(src) && src[i+1] == '}':
			return nil, fmt.Errorf("template %q: column %d: }} without {{", src, i+1)
		case c == '%':
			if i+1 >= len(src) {
				return nil, fmt.Errorf("template %q: column %d: %% at the end (write %%%% for a percent sign)", src, i+1)
			}
			v := src[i+1]
			switch v {
			case '%':
				lit.WriteByte('%')
			case 'Y', 'y', 'm', 'd', 'H', 'M', 'S', 'j', 's':
				flush()
				t.parts = append(t.parts, part{kind: kTime, verb: v})
				t.usesTim = true
			default:
				return nil, fmt.Errorf("template %q: column %d: unknown directive %%%c (known: %%Y %%y %%m %%d %%H %%M %%S %%j %%s %%%%)", src, i+1, v)
			}
			i += 2
		default:
			lit.WriteByte(c)
			i++
		}
	}
	flush()
	for k := range keys {
		t.keys = append(t.keys, k)
	}
	sort.Strings(t.keys)
	return t, nil
}

// MustCompile is Compile that panics on error, for tests and constants.
func MustCompile(src string) *Template {
	t, err := Compile(src)
	if err != nil {
		panic(err)
	}
	return t
}

func parseField(s string) (part, error) {
	expr := strings.TrimSpace(s)
	p := part{kind: kField}
	if i := strings.Index(expr, "??"); i >= 0 {
		fb := strings.TrimSpace(expr[i+2:])
		expr = strings.TrimSpace(expr[:i])
		var v string
		switch {
		case len(fb) >= 2 && fb[0] == '"' && fb[len(fb)-1] == '"':
			u, err := strconv.Unquote(fb)
			if err != nil {
				return p, fmt.Errorf("fallback %s: %v", fb, err)
			}
			v = u
		case len(fb) >= 2 && fb[0] == '\'' && fb[len(fb)-1] == '\'':
			v = fb[1 : len(fb)-1]
		default:
			return p, fmt.Errorf("fallback %q is not a quoted string", fb)
		}
		p.lit, p.fallback = v, true
	}
	if expr == "" {
		return p, fmt.Errorf("empty field reference")
	}
	for _, seg := range strings.Split(expr, ".") {
		if seg == "" {
			return p, fmt.Errorf("field reference %q has an empty path segment", expr)
		}
		for _, r := range seg {
			if !(r == '_' || r == '-' || r == '@' || r == '/' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || r > 0x7f) {
				return p, fmt.Errorf("field reference %q: unexpected %q (write {{ path.to.field }} or {{ field ?? \"fallback\" }})", expr, r)
			}
		}
		p.path = append(p.path, seg)
	}
	p.dotted = expr
	return p, nil
}

// String returns the source.
func (t *Template) String() string { return t.src }

// IsStatic reports whether the template renders the same for every event (no
// field references, no time directives).
func (t *Template) IsStatic() bool {
	for _, p := range t.parts {
		if p.kind != kLiteral {
			return false
		}
	}
	return true
}

// UsesTime reports whether the template has strftime directives.
func (t *Template) UsesTime() bool { return t.usesTim }

// Keys returns the top-level record fields the template reads (sorted), so
// that a pipeline that parses records partially parses them. For a dotted
// path it lists both the first segment and the whole dotted key.
func (t *Template) Keys() []string { return t.keys }

// Literals returns the literal text of the template (its parts outside
// {{ }} and % directives), concatenated: outputs use it to check at load
// that the fixed part of a name is acceptable.
func (t *Template) Literals() string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.kind == kLiteral {
			b.WriteString(p.lit)
		}
	}
	return b.String()
}

// Glob returns a wildcard pattern that every rendering of the template
// matches: its literal text, with `*` for each field and time directive
// (runs of them collapsed), e.g. `app-*-*.*.*` for
// `app-{{ service }}-%Y.%m.%d`. Outputs use it for a server-side pattern
// (an index template's index_patterns).
func (t *Template) Glob() string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.kind == kLiteral {
			b.WriteString(p.lit)
		} else if s := b.String(); !strings.HasSuffix(s, "*") {
			b.WriteByte('*')
		}
	}
	return b.String()
}

// Render returns the template rendered for e as a string (allocates).
func (t *Template) Render(e *event.Event) string { return string(t.Append(nil, e)) }

// Append appends the template rendered for e to dst.
func (t *Template) Append(dst []byte, e *event.Event) []byte {
	var (
		year, yday  int
		month       int
		day         int
		hour, min   int
		sec         int
		timeDecoded bool
	)
	for i := range t.parts {
		p := &t.parts[i]
		switch p.kind {
		case kLiteral:
			dst = append(dst, p.lit...)
		case kField:
			var ok bool
			dst, ok = appendValue(dst, lookup(e, p))
			if !ok && p.fallback {
				dst = append(dst, p.lit...)
			}
		case kTime:
			if !timeDecoded {
				u := e.Time.UTC()
				y, mo, d := u.Date()
				year, month, day = y, int(mo), d
				hour, min, sec = u.Clock()
				yday = u.YearDay()
				timeDecoded = true
			}
			switch p.verb {
			case 'Y':
				dst = appendInt(dst, year, 4)
			case 'y':
				dst = appendInt(dst, year%100, 2)
			case 'm':
				dst = appendInt(dst, month, 2)
			case 'd':
				dst = appendInt(dst, day, 2)
			case 'H':
				dst = appendInt(dst, hour, 2)
			case 'M':
				dst = appendInt(dst, min, 2)
			case 'S':
				dst = appendInt(dst, sec, 2)
			case 'j':
				dst = appendInt(dst, yday, 3)
			case 's':
				dst = strconv.AppendInt(dst, e.Time.Unix(), 10)
			}
		}
	}
	return dst
}

// appendInt appends v zero-padded to width digits.
func appendInt(dst []byte, v, width int) []byte {
	if v < 0 {
		dst = append(dst, '-')
		v = -v
	}
	var buf [20]byte
	i := len(buf)
	for v >= 10 {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	i--
	buf[i] = byte('0' + v)
	for n := len(buf) - i; n < width; n++ {
		dst = append(dst, '0')
	}
	return append(dst, buf[i:]...)
}

func lookup(e *event.Event, p *part) any {
	v, ok := e.Known(p.path[0])
	if ok && len(p.path) == 1 {
		return v
	}
	if ok {
		cur := v
		found := true
		for _, seg := range p.path[1:] {
			m, isMap := cur.(map[string]any)
			if !isMap {
				found = false
				break
			}
			if cur, isMap = m[seg]; !isMap {
				found = false
				break
			}
		}
		if found {
			return cur
		}
	}
	if len(p.path) > 1 {
		if v, ok := e.Known(p.dotted); ok {
			return v
		}
	}
	return nil
}

// appendValue appends a scalar; it reports false (appending nothing) for a
// missing, null or non-scalar value.
func appendValue(dst []byte, v any) ([]byte, bool) {
	switch x := v.(type) {
	case string:
		if x == "" {
			return dst, false
		}
		return append(dst, x...), true
	case []byte:
		if len(x) == 0 {
			return dst, false
		}
		return append(dst, x...), true
	case bool:
		return strconv.AppendBool(dst, x), true
	case int:
		return strconv.AppendInt(dst, int64(x), 10), true
	case int64:
		return strconv.AppendInt(dst, x, 10), true
	case int32:
		return strconv.AppendInt(dst, int64(x), 10), true
	case uint64:
		return strconv.AppendUint(dst, x, 10), true
	case uint:
		return strconv.AppendUint(dst, uint64(x), 10), true
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return dst, false
		}
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return strconv.AppendInt(dst, int64(x), 10), true
		}
		return strconv.AppendFloat(dst, x, 'f', -1, 64), true
	case float32:
		return appendValue(dst, float64(x))
	case json.Number:
		return append(dst, x...), true
	}
	return dst, false
}
