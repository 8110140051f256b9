package build

import (
	"fmt"

	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/parser/internal/container"
	"github.com/sidelog/sidelog/plugins"
)

// ValidateNamed checks one `parsers:` entry; messages start with the key.
func ValidateNamed(reg *plugins.Registry, n parser.Named) []error {
	var errs []error
	if n.Name == "" {
		errs = append(errs, fmt.Errorf("name: a named parser needs a name"))
	} else if _, builtin := reg.Parser(n.Name); builtin {
		errs = append(errs, fmt.Errorf("name: %q is the name of a built-in parser", n.Name))
	}
	ok := false
	for _, t := range container.InnerNames {
		ok = ok || t == n.Type
	}
	if !ok {
		return append(errs, fmt.Errorf("type: %q: a named parser is one of %v (container framing and multiline belong to the input)", n.Type, container.InnerNames))
	}
	return append(errs, Validate(reg, parser.Config{Parser: n.Type, Regex: n.Regex, TimeKey: n.TimeKey, TimeFormat: n.TimeFormat})...)
}

// Resolve replaces a named parser in an input's parser or inner_parser by
// its type and settings. A name that is not in named is left alone (it may
// be a plugin's; Validate reports it otherwise).
func Resolve(cfg parser.Config, named []parser.Named) parser.Config {
	for _, n := range named {
		switch n.Name {
		case cfg.Parser:
			cfg.Parser, cfg.Regex = n.Type, n.Regex
		case cfg.InnerParser:
			cfg.InnerParser, cfg.InnerRegex = n.Type, n.Regex
		default:
			continue
		}
		if n.TimeKey != "" {
			cfg.TimeKey, cfg.TimeFormat = n.TimeKey, n.TimeFormat
		}
	}
	return cfg
}

// Variant builds the parser an input uses for lines that a pod's
// sidelog.io/parser annotation gives to the named parser n: the input's own
// configuration with n as the field parser (as inner_parser under cri or
// docker, whose framing the input's assembler still decodes). Static
// fields, stream and truncated marks stay the input's.
func Variant(reg *plugins.Registry, base parser.Config, n parser.Named, maxLineBytes int) (parser.Parser, error) {
	cfg := base
	if isContainer(parserName(base)) {
		cfg.InnerParser, cfg.InnerRegex = n.Type, n.Regex
	} else {
		cfg.Parser, cfg.Regex = n.Type, n.Regex
	}
	if n.TimeKey != "" {
		cfg.TimeKey, cfg.TimeFormat = n.TimeKey, n.TimeFormat
	}
	cfg.Multiline = nil // the input's assembler does it
	p, _, err := Build(reg, cfg, maxLineBytes)
	return p, err
}
