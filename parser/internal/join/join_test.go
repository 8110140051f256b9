package join

import (
	"testing"
	"unicode/utf8"

	"github.com/sidelog/sidelog/event"
)

// Issue 20: a group cut at max_line_bytes never ends inside a UTF-8
// character, whether the first piece or a later one crosses the limit.
func TestCutIsUTF8Safe(t *testing.T) {
	g := Group{Max: 5}
	g.Add(&event.Event{Raw: []byte("abc\u20acz")}, "")
	if e := g.Take(); string(e.Raw) != "abc" || !e.Has(event.Truncated) {
		t.Fatalf("first piece: %q", e.Raw)
	}
	g.Add(&event.Event{Raw: []byte("ab")}, "")
	g.Add(&event.Event{Raw: []byte("\u20ac\u20ac")}, "\n")
	e := g.Take()
	if !utf8.Valid(e.Raw) || string(e.Raw) != "ab\n" || !e.Has(event.Truncated) {
		t.Fatalf("later piece: %q", e.Raw)
	}
}

// Issue 14: the bytes a cut gives up are counted (the pieces past the cut
// and the cut part of the piece crossing it), across Take, once.
func TestCutCountsLostBytes(t *testing.T) {
	g := Group{Max: 10}
	g.Add(&event.Event{Raw: []byte("0123456")}, "")
	g.Add(&event.Event{Raw: []byte("789abc")}, "\n") // "\n78" kept: 4 lost
	g.Add(&event.Event{Raw: []byte("defgh")}, "\n")  // all 5 lost
	if e := g.Take(); string(e.Raw) != "0123456\n78" {
		t.Fatalf("%q", e.Raw)
	}
	g.Add(&event.Event{Raw: []byte("0123456789AB")}, "") // first piece cut: 2 lost
	g.Take()
	if n := g.TakeLost(); n != 4+5+2 {
		t.Fatalf("lost %d, want 11", n)
	}
	if n := g.TakeLost(); n != 0 {
		t.Fatalf("lost %d again", n)
	}
	g.Add(&event.Event{Raw: []byte("short")}, "")
	g.Add(&event.Event{Raw: []byte("er")}, "\n")
	g.Take()
	if n := g.TakeLost(); n != 0 {
		t.Fatalf("lost %d without a cut", n)
	}
}
