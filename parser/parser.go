// Package parser turns raw lines into structured records.
//
// Two kinds of stage live here. An Assembler is stateful and runs per file
// inside the input: it decodes container runtime framing (CRI, Docker) and
// joins partial lines and multiline groups. A Parser is stateless and runs in
// the pipeline: it turns an event's Raw bytes into Fields.
package parser

import (
	"time"

	"github.com/sidelog/sidelog/event"
)

// Parser fills e.Fields from e.Raw. It never fails: a line that does not
// parse becomes {"message": raw, "parse_error": reason} with the ParseFailed
// flag set. It may run on several goroutines at once.
type Parser interface {
	Parse(e *event.Event)
}

// Assembler joins pieces of lines into events for one file. It is used by one
// goroutine. Events appended to out own their references (see event.Join).
type Assembler interface {
	// Push takes one line and appends the events it completes to out.
	Push(line *event.Event, out []*event.Event) []*event.Event
	// Flush appends everything pending (timeout, EOF of a rotated file).
	Flush(out []*event.Event) []*event.Event
	// Deadline reports when Flush must be called if no line comes.
	Deadline() (time.Time, bool)
}

// Config is the parsing part of an input's configuration.
type Config struct {
	Parser      string           `yaml:"parser"`
	Regex       string           `yaml:"regex"`
	InnerParser string           `yaml:"inner_parser"`
	InnerRegex  string           `yaml:"inner_regex"`
	Multiline   *MultilineConfig `yaml:"multiline"`
	TimeKey     string           `yaml:"time_key"`
	TimeFormat  string           `yaml:"time_format"`
	// Timezone is the zone of times whose format has no offset (a Go
	// layout without one, iso8601 without one): an IANA name such as
	// Europe/Paris, or Local. Default UTC.
	Timezone string            `yaml:"timezone"`
	Fields   map[string]string `yaml:"fields"`
}

// MultilineConfig groups lines into one event.
type MultilineConfig struct {
	Preset  string        `yaml:"preset"`
	Start   string        `yaml:"start"`
	Timeout time.Duration `yaml:"timeout"`
}

// KeySelector is implemented by parsers that can fill Fields with only some
// top-level keys (the JSON parser). The pipeline calls SelectKeys once, at
// build time, before the first Parse, with the top-level keys that filters,
// routes and templates read. With all == false the parser fills Fields only
// with those keys and installs e.SetLazy so that e.Full() completes the map
// later; with no key at all Fields may stay nil (the line is still
// validated). A parser whose SelectKeys is never called parses fully.
type KeySelector interface {
	SelectKeys(keys []string, all bool)
}

// Named is one entry of the config's top-level `parsers:`: a parser with a
// name, chosen by an input's `parser: <name>` (or `inner_parser: <name>`
// under cri/docker) or, at run time, by a pod's sidelog.io/parser
// annotation. Its type is one of the field parsers (json, logfmt, regex,
// none): container framing and multiline belong to the input, per file.
type Named struct {
	Name       string `yaml:"name"`
	Type       string `yaml:"type"`
	Regex      string `yaml:"regex"`
	TimeKey    string `yaml:"time_key"`
	TimeFormat string `yaml:"time_format"`
}
