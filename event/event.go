// Package event defines the record that flows through sidelog's pipeline.
//
// An Event is cheap to move: the raw line is kept as bytes (parsers read it,
// outputs may write it through unchanged), parsed fields live in a map that
// expressions read directly, and the source position names the line on this
// host forever, so acknowledgements can advance checkpoints and outputs can
// derive stable document ids.
//
// Changing a record: a stage that sets or removes a top-level field calls
// e.SetField(key, v) or e.DeleteField(key), and reads one with e.Field(key).
// While Raw is a JSON object that no stage rewrote (RawJSON set, Modified
// not), these record the change in an overlay on top of Raw instead of
// parsing the whole line into Fields: AppendJSON then copies every untouched
// top-level member of Raw verbatim, in its original order, writes a set
// field in place of the member it replaces, skips removed ones and appends
// new fields at the end. The overlay's values are also written into Fields
// (and removed keys deleted from it), so that later expressions see them.
// A stage that needs the whole map (a nested path, all fields) calls
// e.Mutable(): the map is completed, the overlay folded into it, Modified
// set, and from then on Fields alone is the record, serialised with sorted
// keys. e.Full() completes the map for reading and keeps the overlay.
//
// Ownership: a batch ([]*Event) belongs to whoever received it last. A stage
// that keeps an event beyond the call that handed it over must say so; a stage
// that drops an event must call Done on it, exactly once per reference held.
package event

import (
	"bytes"
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
	// Modified: a stage changed Fields through Mutable, so Raw no longer
	// represents the record and outputs must serialise Fields. Changes made
	// through SetField and DeleteField on a RawJSON record do not set it:
	// they live in the overlay (see HasOverlay).
	Modified
	// RawJSON: Raw is a JSON object, valid UTF-8, whose content is exactly
	// Fields (plus the overlay, if any): while Modified is not set and there
	// is no overlay, an output may write Raw verbatim.
	RawJSON
	// RawChecked: set with RawJSON by the JSON parser, which checked Raw to
	// be exactly one well-formed object; the overlay writer then trusts
	// Raw's structure (a RawJSON set by hand does not have it, and Raw is
	// walked with checks).
	RawChecked
	// RawPlain: set with RawChecked by the JSON parser when Raw holds no
	// backslash (no string in it has an escape), so that every key in it
	// is written as its plain bytes.
	RawPlain
)

// Event is one record.
type Event struct {
	// Raw is the line without its trailing newline (or the joined lines of a
	// multiline group). It may alias a read buffer shared with other events of
	// the same batch; nobody writes into it.
	Raw []byte
	// Fields holds the parsed fields. It may be nil before parsing. When
	// Partial is set, it holds only the keys that the pipeline's expressions
	// reference; Full() completes it. A parser that selects a few keys
	// hands them over with AddField, which keeps up to four fields in the
	// event itself (no map): Fields is then nil until something needs the
	// map (Full, Mutable, KnownFields). Read a field with Field or Known,
	// not through the map, unless you called one of those.
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
	// ID is the record's stable id when its input knows one that Pos does
	// not give (the kafka input: the producer's source-id header, else
	// topic/partition/offset). Outputs that write stable ids use it instead
	// of deriving one from Pos (output/sourceid).
	ID string

	// Partial: Fields holds only some of the record's keys.
	Partial bool
	// complete fills Fields completely from Raw when Partial is set.
	complete func(*Event)

	// over: top-level fields set or removed on top of Raw (see SetField);
	// only while RawJSON is set and Modified is not. One entry per key.
	over []overField
	// overBuf holds the first overlay entries (the usual one or two: a
	// computed field, the CRI stream), so that they cost no allocation in
	// the input's reused event slabs. Do not copy an Event by value once
	// it has an overlay: the copy's entries would alias these.
	overBuf [2]overField
	// pairs holds the record's fields while Fields is nil (see AddField):
	// the first npairs entries, one per key. Fields and pairs are never
	// both in use: the first need for a map moves the pairs into it.
	pairs  [4]pair
	npairs uint8
	// shared: a value set by SetFieldShared may be in Fields; Mutable
	// gives the record its own copies first.
	shared bool
	// absentKey is the last key Field found not to be a member of
	// absentRaw (Raw at the time): set next, its overlay entry is known
	// to be new (overField.rawAbsent), so writing it need not look for it
	// in Raw again.
	absentKey string
	absentRaw []byte
	// sel: the keys the parser looked for in selRaw (SetSelection).
	sel    *Selection
	selRaw []byte

	ack   *Ack
	extra []*Ack // joined events: the acks of the other pieces
}

// pair is one field kept in the event (Event.pairs).
type pair struct {
	key string
	val any
}

// overField is one overlay entry: key set to val, or removed (del). enc,
// when set, is val's JSON (SetFieldShared), written as it is.
type overField struct {
	key string
	val any
	enc []byte
	del bool
	// rawAbsent: key is known not to be a member of Raw.
	rawAbsent bool
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

// Full returns Fields completed from Raw if they were parsed partially. The
// overlay's changes are in the map; the overlay is kept, so writing the
// record can still copy Raw's untouched members. Do not change the map it
// returns: call Mutable (or SetField, DeleteField) for that.
func (e *Event) Full() map[string]any {
	if e.npairs != 0 {
		e.spill(0)
	}
	if e.Partial && e.complete != nil {
		e.complete(e) // adds Raw's keys that Fields lacks: set keys win
		for i := range e.over {
			if e.over[i].del {
				delete(e.Fields, e.over[i].key) // complete put it back
			}
		}
	}
	e.Partial = false
	e.complete = nil
	if e.Fields == nil {
		e.Fields = make(map[string]any, 8)
	}
	return e.Fields
}

// Mutable returns the complete field map and marks the event modified: the
// call a stage makes before changing Fields directly (nested paths, many
// keys). The overlay, if any, is folded into the map and dropped: Fields
// alone is the record from then on.
func (e *Event) Mutable() map[string]any {
	m := e.Full()
	e.Flags |= Modified
	e.dropOverlay()
	if e.shared {
		// A shared value may sit under any key by now (a rename moves
		// it): every object and array becomes the record's own.
		e.shared = false
		for k, v := range m {
			switch v.(type) {
			case map[string]any, []any:
				m[k] = deepCopy(v, 0)
			}
		}
	}
	return m
}

func (e *Event) dropOverlay() {
	clear(e.over)
	e.over = e.over[:0]
}

// overlayable: changes go to the overlay rather than into a completed map.
func (e *Event) overlayable() bool { return e.Flags&(RawJSON|Modified) == RawJSON }

// HasOverlay reports whether top-level fields were set or removed on top of
// Raw: Raw alone no longer is the record, and AppendJSON merges the two.
func (e *Event) HasOverlay() bool { return len(e.over) > 0 }

// Field returns the top-level field key. It reads Fields; only when the map
// is partial, the key is not in it and Raw holds it (an unselected key) does
// it complete the map.
func (e *Event) Field(key string) (any, bool) {
	if v, ok := e.known(key); ok {
		return v, true
	}
	if !e.Partial {
		return nil, false
	}
	if e.overlayable() {
		if i := e.overIndex(key); i >= 0 {
			return nil, false // removed (a set key is in Fields)
		}
		if e.knownAbsent(key) {
			// the parser looked for key (selected) and did not find it:
			// no need to search Raw
			return nil, false
		}
		if has, ok := e.rawHas(key); ok && !has {
			e.absentKey, e.absentRaw = key, e.Raw
			return nil, false
		}
	}
	v, ok := e.Full()[key]
	return v, ok
}

// SetField sets the top-level field key to v: in the overlay and in Fields
// while the record is RawJSON and not Modified, else in the completed map
// (as Mutable()[key] = v).
func (e *Event) SetField(key string, v any) {
	if !e.overlayable() {
		e.Mutable()[key] = v
		return
	}
	absent := e.overIndex(key) < 0 && e.knownAbsent(key)
	e.setKnown(key, v)
	e.putOver(key, v, false, absent)
}

// knownAbsent reports whether Field last found key absent from Raw as it
// is, or the parser looked for key among Raw's members (SetSelection)
// without finding it: key has no overlay entry (a removal would be one)
// and is not among the fields now (the parser gave it with AddField). Call
// it before the change that makes key known.
func (e *Event) knownAbsent(key string) bool {
	if e.absentKey == key && sameBytes(e.absentRaw, e.Raw) {
		return true
	}
	if e.sel == nil || !sameBytes(e.selRaw, e.Raw) || !e.sel.has(key) || e.overIndex(key) >= 0 {
		return false
	}
	_, ok := e.known(key)
	return !ok
}

// KnownAbsent reports whether the record certainly has no top-level key
// key, without walking Raw: it is not among the fields known, and the
// record is complete, or the key was removed, or the parser looked for it
// (a selected key) and did not find it. false means "maybe": ask Field.
func (e *Event) KnownAbsent(key string) bool {
	if _, ok := e.known(key); ok {
		return false
	}
	if !e.Partial {
		return true
	}
	return e.overlayable() && (e.overIndex(key) >= 0 || e.knownAbsent(key))
}

// sameBytes reports whether a and b are the same bytes in memory.
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// rawPlain reports whether Raw holds no backslash, from the parser's
// RawPlain when it set it.
func (e *Event) rawPlain() bool {
	return e.Flags&RawPlain != 0 || bytes.IndexByte(e.Raw, '\\') < 0
}

// Selection is the set of top-level keys a parser looked for in Raw (its
// selected keys), shared by every record it parses: SetSelection.
type Selection struct {
	keys []string
}

// NewSelection returns the selection of keys (kept, not copied).
func NewSelection(keys []string) *Selection { return &Selection{keys: keys} }

func (s *Selection) has(key string) bool {
	for _, k := range s.keys {
		if k == key {
			return true
		}
	}
	return false
}

// SetSelection is for parsers: the parser walked every top-level member of
// Raw (as it is now) and gave each one whose key is in sel with AddField.
// A key of sel that a stage then sets is known to be new, so writing the
// record need not look for it in Raw.
func (e *Event) SetSelection(sel *Selection) {
	e.sel, e.selRaw = sel, e.Raw
}

// rawHas is rawHasKey on Raw, first trying to prove absence without
// walking it: in a line the parser checked (RawChecked) that holds no
// backslash, a plain key whose quoted form occurs nowhere is not a key.
func (e *Event) rawHas(key string) (has, ok bool) {
	if e.Flags&RawChecked != 0 && plainKey(key) && e.rawPlain() && !quotedIn(e.Raw, key) {
		return false, true
	}
	return rawHasKey(e.Raw, key)
}

// SetFieldShared is SetField for a value many records share (the same
// object for every record of a pod, say), given with its JSON encoding enc
// (AppendValue(nil, v)), which AppendJSON then copies instead of encoding
// v again. Nobody may change v or anything in it: a stage that changes the
// record calls Mutable (or SetField, DeleteField, which replace the key),
// and Mutable gives the record its own deep copies of the objects and
// arrays in Fields first. On a record that is not overlayable the copy is
// made at once.
func (e *Event) SetFieldShared(key string, v any, enc []byte) {
	if !e.overlayable() {
		e.Mutable()[key] = deepCopy(v, 0)
		return
	}
	i := e.overIndex(key)
	absent := i < 0 && e.knownAbsent(key)
	e.setKnown(key, v)
	e.shared = true
	if i >= 0 {
		e.over[i] = overField{key: key, val: v, enc: enc, rawAbsent: e.over[i].rawAbsent}
		return
	}
	if e.over == nil {
		e.over = e.overBuf[:0]
	}
	e.over = append(e.over, overField{key: key, val: v, enc: enc, rawAbsent: absent})
}

// deepCopy copies objects and arrays, to MaxDepth (a deeper or cyclic
// value is cut there, as AppendValue writes it).
func deepCopy(v any, depth int) any {
	switch x := v.(type) {
	case map[string]any:
		if depth >= MaxDepth {
			return DepthExceeded
		}
		m := make(map[string]any, len(x))
		for k, el := range x {
			m[k] = deepCopy(el, depth+1)
		}
		return m
	case []any:
		if depth >= MaxDepth {
			return DepthExceeded
		}
		a := make([]any, len(x))
		for i, el := range x {
			a[i] = deepCopy(el, depth+1)
		}
		return a
	}
	return v
}

// DeleteField removes the top-level field key, like SetField does its
// change. Removing an absent key changes nothing.
func (e *Event) DeleteField(key string) {
	if !e.overlayable() {
		delete(e.Mutable(), key)
		return
	}
	if e.deleteKnown(key) {
	} else if !e.Partial {
		return // Fields is the whole record: absent
	} else if has, ok := e.rawHas(key); ok && !has {
		return
	}
	e.putOver(key, nil, true, false)
}

// known returns the field key as far as the record has it now: the pairs
// or Fields, without completing a partial map.
func (e *Event) known(key string) (any, bool) {
	if e.Fields != nil {
		if v, ok := e.Fields[key]; ok {
			return v, true
		}
	}
	for i := range e.pairs[:e.npairs] {
		if e.pairs[i].key == key {
			return e.pairs[i].val, true
		}
	}
	return nil, false
}

// setKnown sets key in the pairs while Fields is nil and they have room,
// else in Fields.
func (e *Event) setKnown(key string, v any) {
	if e.Fields == nil {
		n := int(e.npairs)
		for i := range e.pairs[:n] {
			if e.pairs[i].key == key {
				e.pairs[i].val = v
				return
			}
		}
		if n < len(e.pairs) {
			e.pairs[n] = pair{key: key, val: v}
			e.npairs++
			return
		}
		e.spill(1)
	}
	e.Fields[key] = v
}

// deleteKnown removes key from the pairs or Fields, reporting whether it
// was there.
func (e *Event) deleteKnown(key string) bool {
	found := false
	if _, ok := e.Fields[key]; ok {
		delete(e.Fields, key)
		found = true
	}
	n := int(e.npairs)
	for i := range e.pairs[:n] {
		if e.pairs[i].key == key {
			copy(e.pairs[i:n], e.pairs[i+1:n])
			e.pairs[n-1] = pair{}
			e.npairs--
			return true
		}
	}
	return found
}

// spill moves the pairs into Fields (made with room for extra more keys).
// A key Fields already has keeps its value there.
func (e *Event) spill(extra int) {
	n := int(e.npairs)
	if e.Fields == nil {
		e.Fields = make(map[string]any, n+extra)
	}
	for i := range e.pairs[:n] {
		if _, ok := e.Fields[e.pairs[i].key]; !ok {
			e.Fields[e.pairs[i].key] = e.pairs[i].val
		}
	}
	clear(e.pairs[:n])
	e.npairs = 0
}

// AddField is for parsers: it sets the top-level field key of the record
// being parsed to v, as read from the line (not an overlay change; a later
// AddField of the same key replaces the value, as JSON's last duplicate
// wins). The first four keys are kept in the event itself, without a map.
func (e *Event) AddField(key string, v any) { e.setKnown(key, v) }

// ResetFields forgets every field (Fields and those kept by AddField), for
// a parser that starts over or fails.
func (e *Event) ResetFields() {
	clear(e.pairs[:e.npairs])
	e.npairs = 0
	e.Fields = nil
}

// Known returns the top-level field key as far as the record holds it now
// (Fields and the fields kept by AddField), without completing a partial
// record: what expressions read, whose keys the parser selected.
func (e *Event) Known(key string) (any, bool) { return e.known(key) }

// HasFields reports whether the record holds any field (Fields is set or
// AddField kept some).
func (e *Event) HasFields() bool { return e.Fields != nil || e.npairs != 0 }

// KnownFields returns Fields after moving the fields kept by AddField into
// it (nil when the record has none), without completing a partial record.
// Do not change the map it returns: call Mutable (or SetField,
// DeleteField) for that.
func (e *Event) KnownFields() map[string]any {
	if e.npairs != 0 {
		e.spill(0)
	}
	return e.Fields
}

// CopyKnown sets every field the record holds now (as Known sees them) in
// m: for a caller that needs them in a map of its own for a moment.
func (e *Event) CopyKnown(m map[string]any) {
	for i := range e.pairs[:e.npairs] {
		m[e.pairs[i].key] = e.pairs[i].val
	}
	for k, v := range e.Fields { // Fields wins, as in known
		m[k] = v
	}
}

func (e *Event) overIndex(key string) int {
	for i := range e.over {
		if e.over[i].key == key {
			return i
		}
	}
	return -1
}

// putOver records the change of key; absent: a new entry's key is known
// not to be a member of Raw.
func (e *Event) putOver(key string, v any, del, absent bool) {
	if i := e.overIndex(key); i >= 0 {
		e.over[i] = overField{key: key, val: v, del: del, rawAbsent: e.over[i].rawAbsent}
		return
	}
	if e.over == nil {
		e.over = e.overBuf[:0]
	}
	e.over = append(e.over, overField{key: key, val: v, del: del, rawAbsent: absent})
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

// AckGroup returns the acknowledgement group set by SetAck (nil if none).
// An input uses it to recognise the read batch an event came from (for
// example to reuse the batch's memory once the engine recycles it).
func (e *Event) AckGroup() *Ack { return e.ack }

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
