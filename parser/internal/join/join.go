// Package join accumulates pieces of lines (container partials, multiline
// groups) into one event, bounded by max_line_bytes.
package join

import (
	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/input/lines"
)

// Group is one event being assembled. The zero value with Max set is ready.
type Group struct {
	// Max bounds the joined Raw in bytes; 0 means no bound. Bytes beyond it
	// are cut: the event gets the Truncated flag, and the pieces that no
	// longer fit still hand their acknowledgements to the joined event.
	Max int

	ev     *event.Event
	buf    []byte // the joined bytes once a second piece came
	joined bool
	cut    bool
	lost   int64 // bytes given up by cuts, kept across Take (TakeLost)
}

// Empty reports whether no piece is pending.
func (g *Group) Empty() bool { return g.ev == nil }

// First returns the first pending piece (nil when empty).
func (g *Group) First() *event.Event { return g.ev }

// Add appends piece, preceded by sep when the group already has a piece.
// The group owns piece afterwards.
func (g *Group) Add(piece *event.Event, sep string) {
	if g.ev == nil {
		g.ev = piece
		if g.Max > 0 && len(piece.Raw) > g.Max {
			n := len(piece.Raw)
			piece.Raw = lines.Cut(piece.Raw, g.Max) // never inside a UTF-8 character
			g.lost += int64(n - len(piece.Raw))
			g.cut = true
		}
		return
	}
	if !g.joined {
		first := g.ev.Raw
		g.buf = make([]byte, 0, max(2*(len(first)+len(sep)+len(piece.Raw)), 256))
		g.buf = append(g.buf, first...)
		g.joined = true
	}
	g.ev.Flags |= piece.Flags & (event.Truncated | event.InvalidUTF8)
	g.ev.Pos = piece.Pos
	g.ev.Join(piece)
	if g.cut {
		g.lost += int64(len(piece.Raw))
		return
	}
	room := len(sep) + len(piece.Raw)
	if g.Max > 0 && len(g.buf)+room > g.Max {
		room = g.Max - len(g.buf)
		g.cut = true
	}
	if room <= len(sep) {
		g.buf = append(g.buf, sep[:room]...)
		g.lost += int64(len(piece.Raw))
		return
	}
	g.buf = append(g.buf, sep...)
	kept := lines.Cut(piece.Raw, room-len(sep))
	g.buf = append(g.buf, kept...)
	g.lost += int64(len(piece.Raw) - len(kept))
}

// TakeLost returns the bytes of pieces given up by cuts at Max since the
// last call (separators not counted: they are not the source's bytes).
func (g *Group) TakeLost() int64 {
	n := g.lost
	g.lost = 0
	return n
}

// Len is the length of the pending joined bytes.
func (g *Group) Len() int {
	if g.joined {
		return len(g.buf)
	}
	if g.ev != nil {
		return len(g.ev.Raw)
	}
	return 0
}

// Take returns the joined event (nil when empty) and resets the group.
func (g *Group) Take() *event.Event {
	e := g.ev
	if e == nil {
		return nil
	}
	if g.joined {
		e.Raw = g.buf
	}
	if g.cut {
		e.Flags |= event.Truncated
	}
	*g = Group{Max: g.Max, lost: g.lost}
	return e
}
