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
