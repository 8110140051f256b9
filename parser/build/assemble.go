package build

import (
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/parser"
)

// assemblers composes the container assembler (per file) with multiline
// (per stream of that file). Either may be nil.
func assemblers(newContainer, newML func() parser.Assembler) func() parser.Assembler {
	switch {
	case newContainer == nil && newML == nil:
		return nil
	case newML == nil:
		return newContainer
	case newContainer == nil:
		return newML
	}
	return func() parser.Assembler {
		return &composite{container: newContainer(), newML: newML}
	}
}

// composite runs container framing first, then multiline per stream.
type composite struct {
	container parser.Assembler
	newML     func() parser.Assembler
	ml        [3]parser.Assembler // stdout, stderr, other
	tmp       []*event.Event
}

func (c *composite) stream(s string) parser.Assembler {
	i := 2
	switch s {
	case "stdout":
		i = 0
	case "stderr":
		i = 1
	}
	if c.ml[i] == nil {
		c.ml[i] = c.newML()
	}
	return c.ml[i]
}

func (c *composite) forward(out []*event.Event) []*event.Event {
	for i, e := range c.tmp {
		if e.Has(event.ParseFailed) && e.Fields != nil { // bad framing: alone
			out = append(out, e)
		} else {
			out = c.stream(e.Stream).Push(e, out)
		}
		c.tmp[i] = nil
	}
	c.tmp = c.tmp[:0]
	return out
}

func (c *composite) Push(line *event.Event, out []*event.Event) []*event.Event {
	c.tmp = c.container.Push(line, c.tmp[:0])
	return c.forward(out)
}

func (c *composite) Flush(out []*event.Event) []*event.Event {
	c.tmp = c.container.Flush(c.tmp[:0])
	out = c.forward(out)
	for _, m := range c.ml {
		if m != nil {
			out = m.Flush(out)
		}
	}
	return out
}

func (c *composite) Deadline() (time.Time, bool) {
	var min time.Time
	found := false
	if t, ok := c.container.Deadline(); ok {
		min, found = t, true
	}
	for _, m := range c.ml {
		if m == nil {
			continue
		}
		if t, ok := m.Deadline(); ok && (!found || t.Before(min)) {
			min, found = t, true
		}
	}
	return min, found
}

// Expire implements parser.Expirer: the container's pieces that are due go
// on through multiline, then each stream's due group.
func (c *composite) Expire(now time.Time, out []*event.Event) []*event.Event {
	c.tmp = expire(c.container, now, c.tmp[:0])
	out = c.forward(out)
	for _, m := range c.ml {
		if m != nil {
			out = expire(m, now, out)
		}
	}
	return out
}

// TakeLost implements parser.LossCounter.
func (c *composite) TakeLost() int64 {
	n := takeLost(c.container)
	for _, m := range c.ml {
		if m != nil {
			n += takeLost(m)
		}
	}
	return n
}

// expire emits what a is due to emit at now: Expire where a implements
// it, else everything when its deadline passed.
func expire(a parser.Assembler, now time.Time, out []*event.Event) []*event.Event {
	if e, ok := a.(parser.Expirer); ok {
		return e.Expire(now, out)
	}
	if d, ok := a.Deadline(); ok && !now.Before(d) {
		return a.Flush(out)
	}
	return out
}

func takeLost(a parser.Assembler) int64 {
	if l, ok := a.(parser.LossCounter); ok {
		return l.TakeLost()
	}
	return 0
}
