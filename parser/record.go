package parser

import (
	"sync/atomic"

	"github.com/sidelog/sidelog/event"
)

// Field names of the record shape (public contract).
const (
	KeyMessage    = "message"
	KeyParseError = "parse_error"
	KeyTruncated  = "truncated"
	KeyStream     = "stream"
)

// Counters of facts found while parsing, process-wide. The engine exports
// them as metrics.
var (
	invalidUTF8 atomic.Uint64
	parseFailed atomic.Uint64
	badTime     atomic.Uint64
	truncated   atomic.Uint64
)

// Stats is a snapshot of the parsing counters.
type Stats struct {
	InvalidUTF8 uint64 // events whose raw line holds invalid UTF-8
	ParseFailed uint64 // events that failed to parse
	BadTime     uint64 // events whose time field was missing or unparsable
	Truncated   uint64 // events cut at max_line_bytes (lines and groups)
}

// ReadStats returns the counters.
func ReadStats() Stats {
	return Stats{
		InvalidUTF8: invalidUTF8.Load(),
		ParseFailed: parseFailed.Load(),
		BadTime:     badTime.Load(),
		Truncated:   truncated.Load(),
	}
}

// Count adds one to the counters of the flags set on e. The composed parser
// built by parser/build calls it once per event.
func Count(f event.Flags) {
	if f&event.InvalidUTF8 != 0 {
		invalidUTF8.Add(1)
	}
	if f&event.ParseFailed != 0 {
		parseFailed.Add(1)
	}
	if f&event.BadTime != 0 {
		badTime.Add(1)
	}
	if f&event.Truncated != 0 {
		truncated.Add(1)
	}
}

// Fail turns e into a parse failure: Fields = {"message": raw line,
// "parse_error": reason}, flag ParseFailed, not RawJSON and not partial.
func Fail(e *event.Event, reason string) {
	e.ResetFields()
	e.Fields = map[string]any{KeyMessage: string(e.Raw), KeyParseError: reason}
	e.Flags |= event.ParseFailed
	e.Flags &^= event.RawJSON | event.RawChecked | event.RawPlain
	e.Partial = false // Full() then ignores any completion function
}
