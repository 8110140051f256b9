package join

import (
	"testing"

	"github.com/sidelog/sidelog/event"
)

func piece(s string, off int64, ack *event.Ack) *event.Event {
	e := &event.Event{Raw: []byte(s), Pos: event.Position{Offset: off}}
	e.SetAck(ack)
	return e
}

func TestGroupJoinsAndTakesOverAcks(t *testing.T) {
	done := 0
	ack := event.NewAck(3, func() { done++ })
	g := Group{Max: 0}
	first := []byte("one")
	g.Add(piece(string(first), 4, ack), "\n")
	g.Add(piece("two", 8, ack), "\n")
	g.Add(piece("three", 14, ack), "\n")
	e := g.Take()
	if string(e.Raw) != "one\ntwo\nthree" || e.Pos.Offset != 14 || e.Has(event.Truncated) {
		t.Fatalf("%q %d %b", e.Raw, e.Pos.Offset, e.Flags)
	}
	if !g.Empty() || g.Take() != nil {
		t.Fatal("not reset")
	}
	e.Done()
	if done != 1 {
		t.Fatalf("ack not released through the joined event: %d", done)
	}
}

func TestGroupCut(t *testing.T) {
	for _, c := range []struct {
		max    int
		pieces []string
		want   string
		cut    bool
	}{
		{10, []string{"12345", "678"}, "12345\n678", false},
		{9, []string{"12345", "678"}, "12345\n678", false},
		{8, []string{"12345", "678"}, "12345\n67", true},
		{6, []string{"12345", "678", "9"}, "12345\n", true},
		{5, []string{"12345", "678"}, "12345", true},
		{3, []string{"12345"}, "123", true},
	} {
		ack := event.NewAck(len(c.pieces), nil)
		g := Group{Max: c.max}
		for i, p := range c.pieces {
			g.Add(piece(p, int64(i), ack), "\n")
		}
		e := g.Take()
		if string(e.Raw) != c.want || e.Has(event.Truncated) != c.cut || len(e.Raw) > c.max {
			t.Errorf("%+v: got %q cut=%v", c, e.Raw, e.Has(event.Truncated))
		}
		e.Done() // must release every piece's reference exactly once (panics otherwise)
	}
}
