package json

import (
	"hash/maphash"
	"sync/atomic"
)

// maxInterned is the longest string value the intern table keeps.
const maxInterned = 32

// internTable remembers short string values already boxed in an interface,
// so that a selected field whose values repeat (level, service, method)
// is stored in the record's map without allocating the string or its box.
// Values are copies, never aliases of a line: they stay valid whatever
// happens to the read buffer. It is safe for concurrent use: each slot is
// replaced atomically. A miss allocates as parsing always did; it takes
// the slot when the slot is empty and one miss in eight otherwise, so that
// frequent values settle and rare ones (ids) do not evict them on every
// line.
type internTable struct {
	misses atomic.Uint32
	slots  [256]atomic.Pointer[interned]
}

type interned struct {
	s string
	v any
}

func (t *internTable) get(b []byte) any {
	slot := &t.slots[maphash.Bytes(internSeed, b)&255]
	cur := slot.Load()
	if cur != nil && cur.s == string(b) {
		return cur.v
	}
	s := string(b)
	v := any(s)
	if cur == nil || t.misses.Add(1)&7 == 0 {
		slot.Store(&interned{s: s, v: v})
	}
	return v
}

// internSeed spreads values over the slots (the same for every table).
var internSeed = maphash.MakeSeed()
