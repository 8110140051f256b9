// Package docker reads the json-file log driver's lines:
// {"log":"<text>\n","stream":"stdout","time":"<RFC3339Nano>"}. A `log`
// without its trailing newline is a partial line (Docker splits at 16 KiB);
// partials are joined per stream until a piece that ends with a newline. The
// event gets the runtime's time and stream; the text (without its newline)
// then goes through inner_parser.
package docker

import (
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/parser/internal/container"
	pjson "github.com/sidelog/sidelog/parser/json"
	"github.com/sidelog/sidelog/plugins"
)

func init() {
	plugins.RegisterParser("docker", plugins.Parser{
		New: func(cfg parser.Config, env plugins.ParserEnv) (parser.Parser, func() parser.Assembler, error) {
			inner, err := container.Inner(cfg, env)
			if err != nil {
				return nil, nil, err
			}
			max, flush := env.MaxLineBytes, cfg.FlushTimeout
			return inner, func() parser.Assembler { return NewWithTimeout(max, flush) }, nil
		},
	})
}

// Assembler decodes json-file lines of one file and joins partials.
type Assembler struct {
	streams *container.Streams
}

var (
	_ parser.Assembler   = (*Assembler)(nil)
	_ parser.Expirer     = (*Assembler)(nil)
	_ parser.LossCounter = (*Assembler)(nil)
)

// New returns an assembler whose joined lines are cut at maxLineBytes and
// whose partial pieces wait parser.DefaultFlushTimeout for the next one.
func New(maxLineBytes int) *Assembler { return NewWithTimeout(maxLineBytes, 0) }

// NewWithTimeout is New with flush_timeout (0: the default).
func NewWithTimeout(maxLineBytes int, flushTimeout time.Duration) *Assembler {
	return &Assembler{streams: container.NewStreams(maxLineBytes, flushTimeout)}
}

// Decode reads one json-file line. reason is empty on success.
func Decode(line []byte) (ts time.Time, stream string, partial bool, text []byte, reason string) {
	m, _, reason := pjson.ParseObject(line)
	if reason != "" {
		return ts, "", false, nil, "docker: " + reason
	}
	log, ok := m["log"].(string)
	if !ok {
		return ts, "", false, nil, "docker: no \"log\" string"
	}
	stream, _ = m["stream"].(string)
	if s, ok := m["time"].(string); ok {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return ts, "", false, nil, "docker: invalid time"
		}
		ts = t
	}
	text = []byte(log)
	if n := len(text); n > 0 && text[n-1] == '\n' {
		text = text[:n-1]
	} else {
		partial = true
	}
	return ts, stream, partial, text, ""
}

// Push implements parser.Assembler. A line that is not a json-file record
// is passed on alone as a parse failure (its raw line kept in message).
func (a *Assembler) Push(line *event.Event, out []*event.Event) []*event.Event {
	ts, stream, partial, text, reason := Decode(line.Raw)
	if reason != "" {
		parser.Fail(line, reason)
		return append(out, line)
	}
	if !ts.IsZero() {
		line.Time = ts
	}
	line.Stream, line.Raw = stream, text
	return a.streams.Add(line, !partial, out)
}

// Flush implements parser.Assembler: pending partials are emitted as they are.
func (a *Assembler) Flush(out []*event.Event) []*event.Event { return a.streams.Flush(out) }

// Deadline implements parser.Assembler: a stream's partial pieces wait
// flush_timeout for the next piece (then Expire emits them as they are:
// the last partial line of a container that exited has no final piece),
// or for Flush (end of a rotated file, shutdown).
func (a *Assembler) Deadline() (time.Time, bool) { return a.streams.Deadline() }

// Expire implements parser.Expirer.
func (a *Assembler) Expire(now time.Time, out []*event.Event) []*event.Event {
	return a.streams.Expire(now, out)
}

// TakeLost implements parser.LossCounter: bytes of pieces past
// max_line_bytes.
func (a *Assembler) TakeLost() int64 { return a.streams.TakeLost() }

// SetClock replaces the assembler's clock (tests).
func (a *Assembler) SetClock(now func() time.Time) { a.streams.Now = now }
