// Package cri reads the container runtime interface log format written by
// containerd and CRI-O: `<RFC3339Nano time> <stdout|stderr> <P|F> <text>`.
// P (partial) pieces are joined per stream until the F (full) piece;
// containerd splits long lines at 16 KiB, CRI-O at 8 KiB. The event gets the
// runtime's time and stream; the text then goes through inner_parser.
package cri

import (
	"bytes"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/parser/internal/container"
	"github.com/sidelog/sidelog/plugins"
)

func init() {
	plugins.RegisterParser("cri", plugins.Parser{
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

// Assembler decodes CRI lines of one file and joins partials per stream.
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

// Decode splits a CRI line into its parts. reason is empty on success.
func Decode(line []byte) (ts time.Time, stream string, partial bool, text []byte, reason string) {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return ts, "", false, nil, "cri: not a CRI log line"
	}
	ts, ok := parseUTC(line[:sp])
	if !ok {
		var err error
		if ts, err = time.Parse(time.RFC3339Nano, string(line[:sp])); err != nil {
			return ts, "", false, nil, "cri: invalid time " + quote(line[:sp])
		}
	}
	rest := line[sp+1:]
	switch {
	case bytes.HasPrefix(rest, []byte("stdout ")):
		stream, rest = "stdout", rest[7:]
	case bytes.HasPrefix(rest, []byte("stderr ")):
		stream, rest = "stderr", rest[7:]
	default:
		return ts, "", false, nil, "cri: invalid stream"
	}
	tag := rest
	if sp := bytes.IndexByte(rest, ' '); sp >= 0 {
		tag, text = rest[:sp], rest[sp+1:]
	} else {
		text = rest[len(rest):]
	}
	// Tags are ':'-separated; the first says partial or full.
	if i := bytes.IndexByte(tag, ':'); i >= 0 {
		tag = tag[:i]
	}
	switch string(tag) {
	case "P":
		partial = true
	case "F":
	default:
		return ts, "", false, nil, "cri: invalid tag " + quote(tag)
	}
	return ts, stream, partial, text, ""
}

func quote(b []byte) string {
	if len(b) > 40 {
		b = b[:40]
	}
	return "\"" + string(bytes.ToValidUTF8(b, []byte("\uFFFD"))) + "\""
}

// Push implements parser.Assembler. A line that is not CRI is passed on
// alone as a parse failure (its raw line kept in message).
func (a *Assembler) Push(line *event.Event, out []*event.Event) []*event.Event {
	ts, stream, partial, text, reason := Decode(line.Raw)
	if reason != "" {
		parser.Fail(line, reason)
		return append(out, line)
	}
	line.Time, line.Stream, line.Raw = ts, stream, text
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

// parseUTC parses the time kubelet writes, 2006-01-02T15:04:05.999999999Z
// (a fraction of 1 to 9 digits, or none), as time.Parse(RFC3339Nano) does,
// without its generality: it was 2.5 % of the agent's CPU at 50,000
// lines/s. ok is false for anything else (an offset, a bad field), which
// the caller gives to time.Parse.
func parseUTC(b []byte) (t time.Time, ok bool) {
	n := len(b)
	if n < 20 || n > 30 || b[n-1] != 'Z' || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return t, false
	}
	num := func(s []byte) (int, bool) {
		v := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	year, ok1 := num(b[0:4])
	month, ok2 := num(b[5:7])
	day, ok3 := num(b[8:10])
	hour, ok4 := num(b[11:13])
	minute, ok5 := num(b[14:16])
	sec, ok6 := num(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 59 {
		return t, false
	}
	if day > 28 && day > daysIn(month, year) {
		return t, false
	}
	nsec := 0
	if n > 20 {
		// ".d" to ".ddddddddd" then Z
		if b[19] != '.' || n == 21 {
			return t, false
		}
		f, okf := num(b[20 : n-1])
		if !okf {
			return t, false
		}
		for range 9 - (n - 21) {
			f *= 10
		}
		nsec = f
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
