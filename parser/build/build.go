// Package build turns an input's parsing configuration into the stages the
// pipeline runs: an assembler factory (container framing, then multiline per
// stream, inside the input) and one composed parser (field parser, then
// time, static fields, stream and truncated).
package build

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/parser/internal/container"
	"github.com/sidelog/sidelog/parser/multiline"
	"github.com/sidelog/sidelog/plugins"
)

// DefaultParser is used when `parser` is not set.
const DefaultParser = "json"

func isContainer(name string) bool { return name == "cri" || name == "docker" }

func parserName(cfg parser.Config) string {
	if cfg.Parser == "" {
		return DefaultParser
	}
	return cfg.Parser
}

// checkRegex validates a regex parser pattern.
func checkRegex(key, pattern string) error {
	if pattern == "" {
		return fmt.Errorf("%s: a pattern is required", key)
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return fmt.Errorf("%s: %v", key, err)
	}
	for _, n := range re.SubexpNames() {
		if n != "" {
			return nil
		}
	}
	return fmt.Errorf("%s: pattern has no named groups", key)
}

// Validate returns every problem of cfg, each message starting with its key.
func Validate(reg *plugins.Registry, cfg parser.Config) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	name := parserName(cfg)
	p, known := reg.Parser(name)
	if !known {
		add("parser: unknown parser %q (known: %s)", name, strings.Join(reg.ParserNames(), ", "))
	}
	if name == "regex" {
		if err := checkRegex("regex", cfg.Regex); err != nil {
			errs = append(errs, err)
		}
	} else if cfg.Regex != "" {
		add("regex: only used with parser: regex")
	}
	if isContainer(name) {
		inner := cfg.InnerParser
		if inner == "" {
			inner = "none"
		}
		ok := false
		for _, n := range container.InnerNames {
			ok = ok || n == inner
		}
		if !ok {
			add("inner_parser: %q cannot parse a container's text (known: %s)", inner, strings.Join(container.InnerNames, ", "))
		} else if _, found := reg.Parser(inner); !found {
			add("inner_parser: parser %q is not registered", inner)
		}
		if inner == "regex" {
			if err := checkRegex("inner_regex", cfg.InnerRegex); err != nil {
				errs = append(errs, err)
			}
		} else if cfg.InnerRegex != "" {
			add("inner_regex: only used with inner_parser: regex")
		}
	} else {
		if cfg.InnerParser != "" {
			add("inner_parser: only used with parser: cri or docker")
		}
		if cfg.InnerRegex != "" {
			add("inner_regex: only used with parser: cri or docker and inner_parser: regex")
		}
	}
	if cfg.Multiline != nil {
		errs = append(errs, multiline.Validate(*cfg.Multiline)...)
	}
	switch {
	case cfg.FlushTimeout < 0:
		add("flush_timeout: must not be negative")
	case cfg.FlushTimeout > 0 && !isContainer(name):
		add("flush_timeout: only used with parser: cri or docker")
	}
	if cfg.PathKey != "" && cfg.PathKey == cfg.OffsetKey {
		add("offset_key: the same key as path_key")
	}
	if cfg.TimeFormat != "" && cfg.TimeKey == "" {
		add("time_format: needs time_key")
	}
	if cfg.Timezone != "" && cfg.TimeKey == "" {
		add("timezone: needs time_key")
	}
	if _, err := newTimeParser(cfg.TimeFormat, cfg.Timezone); err != nil {
		errs = append(errs, err)
	}
	for k := range cfg.Fields {
		if k == "" {
			add("fields: empty key")
		}
	}
	// A parser this package does not know (a test or third-party plugin)
	// checks its own configuration by being built.
	if known && len(errs) == 0 && !builtin[name] {
		if _, _, err := p.New(cfg, plugins.ParserEnv{Lookup: reg.Parser}); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

var builtin = map[string]bool{"json": true, "logfmt": true, "regex": true, "none": true, "cri": true, "docker": true}

// Build validates cfg and composes its stages. The assembler factory is nil
// when every line is one event (no container framing, no multiline).
func Build(reg *plugins.Registry, cfg parser.Config, maxLineBytes int) (parser.Parser, func() parser.Assembler, error) {
	if errs := Validate(reg, cfg); len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	name := parserName(cfg)
	p, _ := reg.Parser(name)
	cfg.Parser = name
	fieldParser, newContainer, err := p.New(cfg, plugins.ParserEnv{MaxLineBytes: maxLineBytes, Lookup: reg.Parser})
	if err != nil {
		return nil, nil, err
	}
	tp, _ := newTimeParser(cfg.TimeFormat, cfg.Timezone)
	c := &Composed{
		inner:     fieldParser,
		timeKey:   cfg.TimeKey,
		time:      tp,
		container: isContainer(name),
		pathKey:   cfg.PathKey,
		offsetKey: cfg.OffsetKey,
	}
	for k, v := range cfg.Fields {
		c.static = append(c.static, kv{k, v})
	}
	var newML func() parser.Assembler
	if cfg.Multiline != nil {
		if newML, err = multiline.New(*cfg.Multiline, maxLineBytes); err != nil {
			return nil, nil, fmt.Errorf("multiline: %w", err)
		}
	}
	return c, assemblers(newContainer, newML), nil
}

type kv struct{ k, v string }

// Composed is the parser Build returns: the field parser, then the time,
// the static fields, the stream and the truncated mark. Safe for concurrent
// use once SelectKeys (if at all) has been called.
type Composed struct {
	inner     parser.Parser
	timeKey   string
	time      timeParser
	static    []kv
	container bool
	pathKey   string // path_key: the file's path
	offsetKey string // offset_key: the offset just past the record's last line
}

var (
	_ parser.Parser      = (*Composed)(nil)
	_ parser.KeySelector = (*Composed)(nil)
)

// SelectKeys implements parser.KeySelector: it forwards keys to the field
// parser, adding the keys this stage reads or may add (time_key, the static
// fields, stream) so that a partial record and its completion agree.
func (c *Composed) SelectKeys(keys []string, all bool) {
	ks, ok := c.inner.(parser.KeySelector)
	if !ok {
		return
	}
	if all {
		ks.SelectKeys(nil, true)
		return
	}
	sel := append([]string(nil), keys...)
	if c.timeKey != "" {
		sel = append(sel, c.timeKey)
	}
	for _, f := range c.static {
		sel = append(sel, f.k)
	}
	for _, k := range [...]string{c.pathKey, c.offsetKey} {
		if k != "" {
			sel = append(sel, k)
		}
	}
	if c.container {
		sel = append(sel, parser.KeyStream)
	}
	ks.SelectKeys(sel, false)
}

// The usual streams, boxed once: a string put into an interface value
// is otherwise copied to the heap, once per record.
var stdoutValue, stderrValue any = "stdout", "stderr"

func streamValue(s string) any {
	switch s {
	case "stdout":
		return stdoutValue
	case "stderr":
		return stderrValue
	}
	return s
}

// Parse implements parser.Parser.
func (c *Composed) Parse(e *event.Event) {
	if !(e.Has(event.ParseFailed) && e.Fields != nil) { // not already failed in an assembler
		c.inner.Parse(e)
	}
	if c.timeKey != "" && !e.Has(event.ParseFailed) {
		v, ok := e.Known(c.timeKey)
		var t = e.Time
		if ok {
			t, ok = c.time.parse(v)
		}
		if ok {
			e.Time = t
		} else {
			e.Flags |= event.BadTime
		}
	}
	// Added fields go through the event's overlay: a record whose line is
	// raw JSON keeps being written from its raw bytes.
	for _, f := range c.static {
		if _, ok := e.Field(f.k); !ok {
			e.SetField(f.k, f.v)
		}
	}
	if c.pathKey != "" && e.Path != "" {
		e.SetField(c.pathKey, e.Path)
	}
	if c.offsetKey != "" && e.Path != "" {
		e.SetField(c.offsetKey, e.Pos.Offset)
	}
	if e.Stream != "" {
		if _, ok := e.Field(parser.KeyStream); !ok {
			e.SetField(parser.KeyStream, streamValue(e.Stream))
		}
	}
	if e.Has(event.Truncated) {
		e.SetField(parser.KeyTruncated, true)
	}
	if !e.Has(event.RawJSON) && !e.Has(event.InvalidUTF8) && !utf8.Valid(e.Raw) {
		e.Flags |= event.InvalidUTF8
	}
	parser.Count(e.Flags)
}
