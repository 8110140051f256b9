// Package container holds what the cri and docker parsers share: the inner
// parser of the container's text and the per-stream joining of partials.
package container

import (
	"fmt"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/parser/internal/join"
	"github.com/sidelog/sidelog/plugins"
)

// InnerNames are the parsers allowed as inner_parser.
var InnerNames = []string{"json", "logfmt", "none", "regex"}

// Inner builds the parser of the container's text from cfg.InnerParser
// (default none) and cfg.InnerRegex.
func Inner(cfg parser.Config, env plugins.ParserEnv) (parser.Parser, error) {
	name := cfg.InnerParser
	if name == "" {
		name = "none"
	}
	ok := false
	for _, n := range InnerNames {
		ok = ok || n == name
	}
	if !ok {
		return nil, fmt.Errorf("inner_parser: %q cannot parse a container's text (use one of json, logfmt, none, regex)", name)
	}
	if env.Lookup == nil {
		return nil, fmt.Errorf("inner_parser: no parser registry")
	}
	p, found := env.Lookup(name)
	if !found {
		return nil, fmt.Errorf("inner_parser: parser %q is not registered", name)
	}
	inner, _, err := p.New(parser.Config{Parser: name, Regex: cfg.InnerRegex}, env)
	if err != nil {
		if name == "regex" {
			return nil, fmt.Errorf("inner_%w", err) // "inner_regex: ..."
		}
		return nil, fmt.Errorf("inner_parser: %w", err)
	}
	return inner, nil
}

// Streams joins partial lines per stream (stdout, stderr, other) with no
// separator, bounded by max; a stream's pending pieces are emitted as they
// are flushTimeout after its last piece (Deadline, Expire).
type Streams struct {
	g       [3]join.Group
	last    [3]time.Time // when each stream's pending group last grew
	timeout time.Duration
	// Now is the clock (tests replace it).
	Now func() time.Time
}

// NewStreams returns joiners bounded by max bytes (0: unbounded) whose
// pending pieces wait at most flushTimeout (0: parser.DefaultFlushTimeout)
// for the next one.
func NewStreams(max int, flushTimeout time.Duration) *Streams {
	if flushTimeout <= 0 {
		flushTimeout = parser.DefaultFlushTimeout
	}
	s := &Streams{timeout: flushTimeout, Now: time.Now}
	for i := range s.g {
		s.g[i].Max = max
	}
	return s
}

func index(stream string) int {
	switch stream {
	case "stdout":
		return 0
	case "stderr":
		return 1
	}
	return 2
}

// Add adds piece (Stream set) to its stream; when final is set, the joined
// event is appended to out.
func (s *Streams) Add(piece *event.Event, final bool, out []*event.Event) []*event.Event {
	i := index(piece.Stream)
	g := &s.g[i]
	g.Add(piece, "")
	if final {
		out = append(out, g.Take())
	} else {
		s.last[i] = s.Now()
	}
	return out
}

// Deadline is when the oldest pending stream must be emitted.
func (s *Streams) Deadline() (time.Time, bool) {
	var d time.Time
	found := false
	for i := range s.g {
		if s.g[i].Empty() {
			continue
		}
		if t := s.last[i].Add(s.timeout); !found || t.Before(d) {
			d, found = t, true
		}
	}
	return d, found
}

// Expire appends the pending streams whose last piece is flushTimeout old
// at now, oldest first piece first.
func (s *Streams) Expire(now time.Time, out []*event.Event) []*event.Event {
	return s.take(out, func(i int) bool { return !now.Before(s.last[i].Add(s.timeout)) })
}

// TakeLost returns the bytes given up by cuts at max since the last call.
func (s *Streams) TakeLost() int64 {
	var n int64
	for i := range s.g {
		n += s.g[i].TakeLost()
	}
	return n
}

// Flush appends the pending partials, oldest first piece first.
func (s *Streams) Flush(out []*event.Event) []*event.Event {
	return s.take(out, func(int) bool { return true })
}

func (s *Streams) take(out []*event.Event, due func(i int) bool) []*event.Event {
	for {
		best := -1
		for i := range s.g {
			if s.g[i].Empty() || !due(i) {
				continue
			}
			if best < 0 || s.g[i].First().Pos.Offset < s.g[best].First().Pos.Offset {
				best = i
			}
		}
		if best < 0 {
			return out
		}
		out = append(out, s.g[best].Take())
	}
}
