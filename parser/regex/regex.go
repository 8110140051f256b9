// Package regex parses lines with a Go RE2 pattern: every named group that
// matched becomes a string field; a group that did not take part in the
// match is absent. A line that does not match fails to parse.
package regex

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/plugins"
)

func init() {
	plugins.RegisterParser("regex", plugins.Parser{
		New: func(cfg parser.Config, _ plugins.ParserEnv) (parser.Parser, func() parser.Assembler, error) {
			p, err := New(cfg.Regex)
			if err != nil {
				return nil, nil, fmt.Errorf("regex: %w", err)
			}
			return p, nil, nil
		},
	})
}

// Parser matches lines against a compiled pattern. Safe for concurrent use.
type Parser struct {
	re    *regexp.Regexp
	names []string // by submatch index; "" for unnamed groups
}

// ErrNoNamedGroups is returned for a pattern that would produce no field.
var ErrNoNamedGroups = errors.New("pattern has no named groups")

// New compiles pattern. The errors say nothing about the key, the caller
// prefixes them (regex:, inner_regex:).
func New(pattern string) (*Parser, error) {
	if pattern == "" {
		return nil, errors.New("a pattern is required")
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, err
	}
	named := false
	for _, n := range re.SubexpNames() {
		named = named || n != ""
	}
	if !named {
		return nil, ErrNoNamedGroups
	}
	return &Parser{re: re, names: re.SubexpNames()}, nil
}

// Parse implements parser.Parser.
func (p *Parser) Parse(e *event.Event) {
	idx := p.re.FindSubmatchIndex(e.Raw)
	if idx == nil {
		parser.Fail(e, "regex: line does not match the pattern")
		return
	}
	m := make(map[string]any, len(p.names))
	for g, name := range p.names {
		if name == "" || idx[2*g] < 0 {
			continue
		}
		m[name] = string(e.Raw[idx[2*g]:idx[2*g+1]])
	}
	e.Fields = m
}
