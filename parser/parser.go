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

// Expirer is implemented by assemblers that hold several groups with
// deadlines of their own (partials per stream, multiline per stream):
// Expire appends only the groups whose deadline is at or before now and
// keeps the others. An input calls it, when the Deadline passed, instead of
// Flush.
type Expirer interface {
	Expire(now time.Time, out []*event.Event) []*event.Event
}

// LossCounter is implemented by assemblers that can give bytes up: a group
// cut at max_line_bytes keeps its first bytes, and the pieces past the cut
// are dropped (their acknowledgements go on with the joined event).
// TakeLost returns the bytes given up since the last call.
type LossCounter interface {
	TakeLost() int64
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
	// FlushTimeout (parser: cri or docker) is how long pending partial
	// pieces of a stream wait for their final piece before they are
	// emitted as one record: the last partial line of a container that
	// exited (often its crash message) has no final piece. Default
	// DefaultFlushTimeout.
	FlushTimeout time.Duration `yaml:"flush_timeout"`
	// PathKey and OffsetKey, when set, add the file's path and the byte
	// offset just past the record's last line to every record, under
	// these top-level keys.
	PathKey   string `yaml:"path_key"`
	OffsetKey string `yaml:"offset_key"`
}

// DefaultFlushTimeout is flush_timeout when unset.
const DefaultFlushTimeout = 5 * time.Second

// MultilineConfig groups lines into one event.
type MultilineConfig struct {
	Preset  string        `yaml:"preset"`
	Start   string        `yaml:"start"`
	Timeout time.Duration `yaml:"timeout"`
	// MaxLines ends a group at this many lines: it is emitted as one
	// record and the next line starts a new group (nothing is lost).
	// Default 2000.
	MaxLines int `yaml:"max_lines"`
	// MaxAge ends a group this long after its first line, even while
	// lines keep joining it (a group that never ends would hold the
	// file's checkpoint back). Default 30s, or 10 × timeout when longer.
	MaxAge time.Duration `yaml:"max_age"`
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
