// Package redact is the filter that masks sensitive text in chosen fields:
// user regular expressions and built-in patterns for credit-card numbers,
// e-mail addresses and bearer tokens.
//
// It fails closed: when its `when` fails at run time, or a field holds a
// value it cannot inspect, the whole field is replaced by the replacement
// text (and the error counted), so that an error never leaks what the
// filter was meant to hide.
package redact

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/expression"
	"github.com/sidelog/sidelog/filter"
	"github.com/sidelog/sidelog/filter/internal/fieldpath"
	"github.com/sidelog/sidelog/plugins"
)

// DefaultReplacement replaces what a pattern matches unless `replacement`
// says otherwise.
const DefaultReplacement = "[REDACTED]"

// Config is the redact filter's configuration.
type Config struct {
	// Fields lists the fields (dotted paths) to scan. Objects and arrays
	// are scanned recursively.
	Fields []string `yaml:"fields"`
	// Patterns are regular expressions (Go RE2 syntax); every match is
	// replaced.
	Patterns []string `yaml:"patterns"`
	// Builtin names built-in patterns: credit_card, email, bearer_token.
	Builtin []string `yaml:"builtin"`
	// Replacement is the text that replaces a match.
	Replacement string `yaml:"replacement"`
}

// Plugin is the registry entry.
var Plugin = plugins.Filter{
	Config: func() any { return &Config{Replacement: DefaultReplacement} },
	New:    func(cfg any, _ plugins.FilterEnv) (filter.Filter, error) { return New(cfg.(*Config)) },
}

func init() { plugins.RegisterFilter("redact", Plugin) }

// Validate compiles the patterns and checks the names.
func (c *Config) Validate() error {
	_, err := New(c)
	return err
}

// rule rewrites one string; changed is false when nothing matched.
type rule interface {
	redact(s, repl string) (out string, changed bool)
}

// Redact is the built filter.
type Redact struct {
	fields   []fieldpath.Path
	rules    []rule
	repl     string
	when     *expression.Program
	errors   atomic.Int64
	redacted atomic.Int64
}

// New builds the filter; errors are *plugins.KeyError (joined).
func New(c *Config) (*Redact, error) {
	var errs []error
	r := &Redact{repl: c.Replacement}
	if len(c.Fields) == 0 {
		errs = append(errs, &plugins.KeyError{Key: "fields", Err: errors.New("list the fields to redact, e.g. [message]")})
	}
	for i, f := range c.Fields {
		p, ok := fieldpath.Parse(f)
		if !ok {
			errs = append(errs, &plugins.KeyError{Key: fmt.Sprintf("fields[%d]", i), Err: fmt.Errorf("invalid field path %q", f)})
			continue
		}
		r.fields = append(r.fields, p)
	}
	for i, s := range c.Patterns {
		re, err := regexp.Compile(s)
		if err != nil {
			errs = append(errs, &plugins.KeyError{Key: fmt.Sprintf("patterns[%d]", i), Err: err})
			continue
		}
		r.rules = append(r.rules, userRule{re})
	}
	for i, name := range c.Builtin {
		b, ok := builtins[name]
		if !ok {
			errs = append(errs, &plugins.KeyError{Key: fmt.Sprintf("builtin[%d]", i),
				Err: fmt.Errorf("unknown built-in pattern %q (known: credit_card, email, bearer_token)", name)})
			continue
		}
		r.rules = append(r.rules, b)
	}
	if len(c.Patterns)+len(c.Builtin) == 0 {
		errs = append(errs, errors.New("redact needs patterns or builtin patterns"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

// TakeWhen implements filter.WhenTaker: redact evaluates its own `when` so
// that a run-time error redacts (fails closed) instead of passing.
func (r *Redact) TakeWhen(when *expression.Program) error {
	r.when = when
	return nil
}

// Apply redacts e's fields. It never drops.
func (r *Redact) Apply(e *event.Event) bool {
	if r.when != nil {
		ok, err := r.when.Bool(e)
		if err != nil {
			r.errors.Add(1)
			r.replaceAll(e)
			return true
		}
		if !ok {
			return true
		}
	}
	f := e.Full()
	changed := false
	for _, p := range r.fields {
		v, ok := p.Get(f)
		if !ok {
			continue
		}
		nv, ch, bad := r.value(v, 0)
		if bad {
			r.errors.Add(1)
			nv, ch = r.repl, true
		}
		if ch {
			p.Set(f, nv)
			changed = true
		}
	}
	if changed {
		r.redacted.Add(1)
		e.Mutable()
	}
	return true
}

// replaceAll replaces every configured field that is present.
func (r *Redact) replaceAll(e *event.Event) {
	f := e.Mutable()
	for _, p := range r.fields {
		if _, ok := p.Get(f); ok {
			p.Set(f, r.repl)
		}
	}
	r.redacted.Add(1)
}

// value redacts v. Objects and arrays are changed in place. bad reports a
// value the filter cannot inspect, including one nested deeper than
// event.MaxDepth (or cyclic): the field is then replaced as a whole.
func (r *Redact) value(v any, depth int) (out any, changed, bad bool) {
	switch t := v.(type) {
	case string:
		if out, ch := r.text(t); ch {
			return out, true, false
		}
		return v, false, false
	case nil, bool:
		return v, false, false
	case float64:
		return r.number(v, strconv.FormatFloat(t, 'f', -1, 64))
	case int:
		return r.number(v, strconv.Itoa(t))
	case int64:
		return r.number(v, strconv.FormatInt(t, 10))
	case map[string]any:
		if depth >= event.MaxDepth {
			return nil, false, true
		}
		for k, x := range t {
			nx, ch, b := r.value(x, depth+1)
			if b {
				return nil, false, true
			}
			if ch {
				t[k] = nx
				changed = true
			}
		}
		return t, changed, false
	case []any:
		if depth >= event.MaxDepth {
			return nil, false, true
		}
		for i, x := range t {
			nx, ch, b := r.value(x, depth+1)
			if b {
				return nil, false, true
			}
			if ch {
				t[i] = nx
				changed = true
			}
		}
		return t, changed, false
	case fmt.Stringer: // json.Number and the like
		return r.number(v, t.String())
	}
	return nil, false, true
}

func (r *Redact) text(s string) (string, bool) {
	changed := false
	for _, rl := range r.rules {
		if out, ch := rl.redact(s, r.repl); ch {
			s, changed = out, true
		}
	}
	return s, changed
}

// number redacts a number through its text: a card number written as a
// JSON number is replaced as a whole.
func (r *Redact) number(v any, s string) (any, bool, bool) {
	if out, ch := r.text(s); ch {
		return out, true, false
	}
	return v, false, false
}

// Keys returns the top-level fields the filter and its `when` read.
func (r *Redact) Keys() ([]string, bool) {
	var keys []string
	all := false
	if r.when != nil {
		k, a := r.when.Keys()
		keys, all = append(keys, k...), a
	}
	for _, p := range r.fields {
		keys = append(keys, p[0])
	}
	return keys, all
}

// Counters implements filter.Counter: "redacted" records changed,
// "errors" run-time errors (each failed closed).
func (r *Redact) Counters() []filter.Count {
	return []filter.Count{
		{Name: "redacted", Value: r.redacted.Load()},
		{Name: "errors", Value: r.errors.Load()},
	}
}

type userRule struct{ re *regexp.Regexp }

func (u userRule) redact(s, repl string) (string, bool) {
	if u.re.FindStringIndex(s) == nil {
		return s, false
	}
	return u.re.ReplaceAllLiteralString(s, repl), true
}

var builtins = map[string]rule{
	"credit_card":  cardRule{regexp.MustCompile(`\b\d(?:[ -]?\d){12,18}\b`)},
	"email":        emailRule{regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}`)},
	"bearer_token": bearerRule{regexp.MustCompile(`(?i)\b(bearer[ \t]+)[A-Za-z0-9\-._~+/]+=*`)},
}

// cardRule replaces 13 to 19 digits (spaces or dashes allowed between
// them) that pass the Luhn check, so that timestamps and ids are kept.
type cardRule struct{ re *regexp.Regexp }

func (c cardRule) redact(s, repl string) (string, bool) {
	digits := 0
	for i := 0; i < len(s) && digits < 13; i++ {
		if s[i] >= '0' && s[i] <= '9' {
			digits++
		}
	}
	if digits < 13 {
		return s, false
	}
	changed := false
	out := c.re.ReplaceAllStringFunc(s, func(m string) string {
		if luhn(m) {
			changed = true
			return repl
		}
		return m
	})
	return out, changed
}

// luhn checks the Luhn checksum of the digits in s.
func luhn(s string) bool {
	sum, n := 0, 0
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if c < '0' || c > '9' {
			continue
		}
		d := int(c - '0')
		if n%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		n++
	}
	return n >= 13 && n <= 19 && sum%10 == 0
}

type emailRule struct{ re *regexp.Regexp }

func (m emailRule) redact(s, repl string) (string, bool) {
	if strings.IndexByte(s, '@') < 0 {
		return s, false
	}
	return userRule(m).redact(s, repl)
}

// bearerRule replaces the token after "Bearer ", keeping the word.
type bearerRule struct{ re *regexp.Regexp }

func (b bearerRule) redact(s, repl string) (string, bool) {
	if !containsFold(s, "bearer") {
		return s, false
	}
	changed := false
	out := b.re.ReplaceAllStringFunc(s, func(m string) string {
		changed = true
		sub := b.re.FindStringSubmatch(m)
		return sub[1] + repl
	})
	return out, changed
}

// containsFold is an allocation-free case-insensitive Contains for an
// ASCII lower-case needle.
func containsFold(s, needle string) bool {
	for i := 0; i+len(needle) <= len(s); i++ {
		j := 0
		for ; j < len(needle); j++ {
			c := s[i+j]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != needle[j] {
				break
			}
		}
		if j == len(needle) {
			return true
		}
	}
	return false
}
