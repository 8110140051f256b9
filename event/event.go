// Package event defines the record that flows through sidelog's pipeline.
//
// An Event is cheap to move: the raw line is kept as bytes (parsers read it,
// outputs may write it through unchanged), parsed fields live in a map that
// expressions read directly, and the source position names the line on this
// host forever, so acknowledgements can advance checkpoints and outputs can
// derive stable document ids.
//
// Ownership: a batch ([]*Event) belongs to whoever received it last. A stage
// that keeps an event beyond the call that handed it over must say so; a stage
// that drops an event must call Done on it, exactly once per reference held.
package event

import (
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// FileID identifies a file independently of its path: device and inode plus a
// fingerprint of its first bytes, so that a reused inode is not mistaken for
// the file that had it before.
type FileID struct {
	Dev         uint64
	Ino         uint64
	Fingerprint uint64
}

// Position names one line on this host: the file identity, the generation
// (incremented each time the file is truncated) and the byte offset just past
// the line's end (including its newline).
type Position struct {
	FileID     FileID
	Generation uint32
	Offset     int64
}

// Flags are facts about a line found while reading or parsing it.
type Flags uint16

const (
	// Truncated: the line was longer than max_line_bytes and was cut.
	Truncated Flags = 1 << iota
	// ParseFailed: the parser could not parse the line; Fields holds
	// {"message": raw, "parse_error": reason}.
	ParseFailed
	// BadTime: the time field could not be parsed; Time is the read time.
	BadTime
	// InvalidUTF8: the raw line holds bytes that are not valid UTF-8.
	InvalidUTF8
	// Modified: a stage changed Fields after parsing, so Raw no longer
	// represents the record and outputs must serialise Fields.
	Modified
	// RawJSON: Raw is a JSON object, valid UTF-8, whose content is exactly
	// Fields: an output may write Raw verbatim while Modified is not set.
	RawJSON
)

// Event is one record.
type Event struct {
	// Raw is the line without its trailing newline (or the joined lines of a
	// multiline group). It may alias a read buffer shared with other events of
	// the same batch; nobody writes into it.
	Raw []byte
	// Fields holds the parsed fields. It may be nil before parsing. When
	// Partial is set, it holds only the keys that the pipeline's expressions
	// reference; Full() completes it.
	Fields map[string]any
	// Time is the event time: parsed from the record, else the read time.
	Time time.Time
	// Input is the configured input name (meta.input).
	Input string
	// Path is the file the line was read from (meta.path).
	Path string
	// Pos is the line's source position.
	Pos Position
	// Flags records facts about the line.
	Flags Flags
	// Stream is "stdout" or "stderr" for container logs, else empty.
	Stream string

	// Partial: Fields holds only some of the record's keys.
	Partial bool
	// complete fills Fields completely from Raw when Partial is set.
	complete func(*Event)

	ack   *Ack
	extra []*Ack // joined events: the acks of the other pieces
}

// Has reports whether flag f is set.
func (e *Event) Has(f Flags) bool { return e.Flags&f != 0 }

// Size is the event's approximate byte size, for byte-based batching and
// queue bounds.
func (e *Event) Size() int { return len(e.Raw) + 64 }

// SetLazy marks Fields as partial and installs the function that completes it.
func (e *Event) SetLazy(complete func(*Event)) {
	e.Partial = true
	e.complete = complete
}

// Full returns Fields completed from Raw if they were parsed partially.
func (e *Event) Full() map[string]any {
	if e.Partial && e.complete != nil {
		e.complete(e)
	}
	e.Partial = false
	e.complete = nil
	if e.Fields == nil {
		e.Fields = make(map[string]any, 8)
	}
	return e.Fields
}

// Mutable returns the complete field map and marks the event modified: the
// call every stage that changes a record makes first.
func (e *Event) Mutable() map[string]any {
	m := e.Full()
	e.Flags |= Modified
	return m
}

// ValidUTF8 reports whether Raw is valid UTF-8, recording the answer.
func (e *Event) ValidUTF8() bool {
	if utf8.Valid(e.Raw) {
		return true
	}
	e.Flags |= InvalidUTF8
	return false
}

// Ack counts the references still held on a group of events (typically one
// read batch of one file). When the count reaches zero, done runs once.
type Ack struct {
	n    atomic.Int64
	done func()
}

// NewAck returns an Ack with n references whose done runs when all are released.
func NewAck(n int, done func()) *Ack {
	a := &Ack{done: done}
	a.n.Store(int64(n))
	return a
}

// Release drops k references.
func (a *Ack) Release(k int) {
	if a == nil {
		return
	}
	if v := a.n.Add(-int64(k)); v == 0 {
		if a.done != nil {
			a.done()
		}
	} else if v < 0 {
		panic("event: Ack released more often than retained")
	}
}

// Retain adds k references.
func (a *Ack) Retain(k int) {
	if a != nil {
		a.n.Add(int64(k))
	}
}

// SetAck attaches the event to an acknowledgement group. The event holds one
// reference on it.
func (e *Event) SetAck(a *Ack) { e.ack = a }

// Join makes e also answer for other's acknowledgement: used when lines are
// joined (multiline, CRI partials) so that the checkpoint cannot pass the
// first piece until the joined event is done. other must not be used again.
func (e *Event) Join(other *Event) {
	if other.ack != nil {
		e.extra = append(e.extra, other.ack)
	}
	e.extra = append(e.extra, other.extra...)
	other.ack, other.extra = nil, nil
}

// Retain adds k references: call it before handing the event to k more
// consumers (fan-out to several outputs).
func (e *Event) Retain(k int) {
	e.ack.Retain(k)
	for _, a := range e.extra {
		a.Retain(k)
	}
}

// Done releases one reference: the event was dropped, or durably taken by
// the next stage.
func (e *Event) Done() {
	e.ack.Release(1)
	for _, a := range e.extra {
		a.Release(1)
	}
}

// Releaser is the part of an event a buffer keeps to acknowledge it later,
// without keeping the event itself alive.
type Releaser struct {
	ack   *Ack
	extra []*Ack
}

// Releaser returns the acknowledgement handle of e (one reference).
func (e *Event) Releaser() Releaser { return Releaser{ack: e.ack, extra: e.extra} }

// Release releases the reference.
func (r Releaser) Release() {
	r.ack.Release(1)
	for _, a := range r.extra {
		a.Release(1)
	}
}

// Meta is what expressions see as `meta`.
type Meta struct {
	Input string    `expr:"input"`
	Path  string    `expr:"path"`
	Time  time.Time `expr:"time"`
}
