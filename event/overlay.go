package event

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
)

// This file walks the top-level members of a raw JSON object (one that the
// parser validated: RawJSON) to write it with the overlay applied, without
// building any value. The walk still checks its bounds: on anything it does
// not expect it reports failure and the caller falls back to Fields.

// member is one top-level member of a raw object: raw[start:end] is
// `"key" : value` as written, raw[keyStart:keyEnd] the key between its
// quotes (escaped as written when esc).
type member struct {
	start, end       int
	keyStart, keyEnd int
	esc              bool
}

// objectWalker yields the members of the object in raw, in order.
type objectWalker struct {
	raw  []byte
	i    int
	done bool
	bad  bool
}

func newObjectWalker(raw []byte) objectWalker {
	w := objectWalker{raw: raw}
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		w.bad, w.done = true, true
		return w
	}
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		w.done = true
	}
	w.i = i
	return w
}

// next returns the next member; ok is false at the end or on malformed
// input (then w.bad is set).
func (w *objectWalker) next() (m member, ok bool) {
	if w.done {
		return m, false
	}
	raw, i := w.raw, w.i
	if i >= len(raw) || raw[i] != '"' {
		return w.fail()
	}
	m.start, m.keyStart = i, i+1
	j := stringEnd(raw, i+1)
	if j < 0 {
		return w.fail()
	}
	m.keyEnd = j
	m.esc = bytes.IndexByte(raw[m.keyStart:j], '\\') >= 0
	i = skipSpace(raw, j+1)
	if i >= len(raw) || raw[i] != ':' {
		return w.fail()
	}
	i = skipSpace(raw, i+1)
	if i = valueEnd(raw, i); i < 0 {
		return w.fail()
	}
	m.end = i
	i = skipSpace(raw, i)
	if i >= len(raw) {
		return w.fail()
	}
	switch raw[i] {
	case ',':
		w.i = skipSpace(raw, i+1)
	case '}':
		w.done = true
	default:
		return w.fail()
	}
	return m, true
}

func (w *objectWalker) fail() (member, bool) {
	w.bad, w.done = true, true
	return member{}, false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index of the closing quote of the string whose
// content starts at i, or -1 if it is unclosed. It looks at 8 bytes at a
// time for a quote or a backslash.
func stringEnd(b []byte, i int) int {
	for {
		for i+8 <= len(b) {
			v := binary.LittleEndian.Uint64(b[i:])
			q := v ^ (lsb * '"')
			bs := v ^ (lsb * '\\')
			if hit := ((q-lsb)&^q | (bs-lsb)&^bs) & msb; hit != 0 {
				i += bits.TrailingZeros64(hit) / 8
				break
			}
			i += 8
		}
		for i < len(b) && b[i] != '"' && b[i] != '\\' {
			i++
		}
		if i >= len(b) {
			return -1
		}
		if b[i] == '"' {
			return i
		}
		i += 2 // a backslash and the byte it escapes
	}
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// valueEnd returns the index just past the value starting at i, or -1.
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		j := stringEnd(b, i+1)
		if j < 0 {
			return -1
		}
		return j + 1
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			case '"':
				j := stringEnd(b, i+1)
				if j < 0 {
					return -1
				}
				i = j
			}
		}
		return -1
	}
	// A number or a literal: up to the next delimiter.
	j := i
	for j < len(b) {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			if j == i {
				return -1
			}
			return j
		}
		j++
	}
	return -1 // an object's member cannot end the line
}

// memberKey returns the member's key: the raw bytes when it has no escape,
// else the decoded key (allocated: rare).
func memberKey(raw []byte, m member) ([]byte, bool) {
	k := raw[m.keyStart:m.keyEnd]
	if !m.esc {
		return k, true
	}
	var s string
	if err := json.Unmarshal(raw[m.keyStart-1:m.keyEnd+1], &s); err != nil {
		return nil, false
	}
	return []byte(s), true
}

// rawHasKey reports whether the raw object has a top-level member key; ok is
// false when raw is not a well-formed object.
func rawHasKey(raw []byte, key string) (has, ok bool) {
	w := newObjectWalker(raw)
	for {
		m, more := w.next()
		if !more {
			return false, !w.bad
		}
		k, kok := memberKey(raw, m)
		if !kok {
			return false, false
		}
		if string(k) == key {
			return true, true
		}
	}
}

// appendOverlay writes Raw's members with the overlay applied: untouched
// members verbatim in their order, a set key in place of its first member,
// removed keys skipped, new keys at the end (in the order they were set).
// It reports false (leaving dst's length as it was) when Raw cannot be
// walked or the overlay is too large for its bookkeeping.
func appendOverlay(dst []byte, e *Event) ([]byte, bool) {
	over := e.over
	if len(over) > 64 {
		return dst, false
	}
	if e.Flags&RawChecked != 0 {
		if out, ok := appendOverlayNew(dst, e.Raw, over, e.Flags&RawPlain != 0); ok {
			return out, true
		}
	}
	return walkOverlay(dst, e)
}

// walkOverlay is appendOverlay by walking Raw's members.
func walkOverlay(dst []byte, e *Event) ([]byte, bool) {
	over := e.over
	var written uint64 // bit i: over[i] was written (or is a removal)
	for i := range over {
		if over[i].del {
			written |= 1 << i
		}
	}
	start := len(dst)
	dst = append(dst, '{')
	first := true
	raw := e.Raw
	// Untouched members are copied in runs: raw[runStart:runEnd] holds
	// consecutive ones with the separators between them.
	runStart, runEnd := -1, -1
	flush := func() {
		if runStart >= 0 {
			if !first {
				dst = append(dst, ',')
			}
			dst = append(dst, raw[runStart:runEnd]...)
			first = false
			runStart = -1
		}
	}
	w := newObjectWalker(raw)
	for {
		m, more := w.next()
		if !more {
			break
		}
		k := raw[m.keyStart:m.keyEnd]
		if m.esc {
			var ok bool
			if k, ok = memberKey(raw, m); !ok {
				return dst[:start], false
			}
		}
		idx := -1
		for i := range over {
			if len(over[i].key) == len(k) && over[i].key == string(k) {
				idx = i
				break
			}
		}
		if idx < 0 {
			if runStart < 0 {
				runStart = m.start
			}
			runEnd = m.end
			continue
		}
		flush()
		if written&(1<<idx) != 0 {
			continue // removed, or a later duplicate of a replaced key
		}
		written |= 1 << idx
		if !first {
			dst = append(dst, ',')
		}
		dst = appendOver(dst, &over[idx])
		first = false
	}
	if w.bad {
		return dst[:start], false
	}
	flush()
	for i := range over {
		if written&(1<<i) != 0 {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		dst = appendOver(dst, &over[i])
		first = false
	}
	return append(dst, '}'), true
}

// appendOverlayNew is appendOverlay's fast path for the common overlay of a
// filter that adds fields the record does not have (modify's set of a new
// key): when no overlay key occurs in Raw, Raw's members are written as one
// run and the set keys after them, without walking the members. Raw must
// have been checked by the parser (RawChecked). It only
// proves absence cheaply: Raw must hold no backslash (so every key in it is
// written literally) and no `"key"` may occur anywhere in it (a value equal
// to a key sends the record to the walk). The output is byte for byte what
// the walk writes: members from the first to the last as written, the new
// members in the order they were set, removals of absent keys ignored.
// plain: the parser found no backslash in raw (RawPlain).
func appendOverlayNew(dst, raw []byte, over []overField, plain bool) ([]byte, bool) {
	checked := plain // raw holds no backslash
	for i := range over {
		if over[i].rawAbsent {
			continue // Field found it absent from raw
		}
		if !checked {
			if bytes.IndexByte(raw, '\\') >= 0 {
				return dst, false
			}
			checked = true
		}
		if !plainKey(over[i].key) || quotedIn(raw, over[i].key) {
			return dst, false
		}
	}
	lo := skipSpace(raw, 0)
	hi := len(raw)
	for hi > lo && isSpace(raw[hi-1]) {
		hi--
	}
	if hi-lo < 2 || raw[lo] != '{' || raw[hi-1] != '}' {
		return dst, false
	}
	lo = skipSpace(raw, lo+1)
	hi--
	for hi > lo && isSpace(raw[hi-1]) {
		hi--
	}
	dst = append(dst, '{')
	dst = append(dst, raw[lo:hi]...)
	first := hi == lo
	for i := range over {
		if over[i].del {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		dst = appendOver(dst, &over[i])
		first = false
	}
	return append(dst, '}'), true
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// plainKey reports whether key is written in JSON exactly as its bytes
// between quotes as far as finding it in a raw line goes: no quote, no
// backslash, no control character.
func plainKey(key string) bool {
	if key == "" {
		return false
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x20 || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// quotedIn reports whether `"key"` occurs in raw.
func quotedIn(raw []byte, key string) bool {
	n := len(key)
	for i := 1; i+n < len(raw); {
		j := bytes.Index(raw[i:len(raw)-1], []byte(key))
		if j < 0 {
			return false
		}
		j += i
		if raw[j-1] == '"' && raw[j+n] == '"' {
			return true
		}
		i = j + 1
	}
	return false
}

// appendOver writes an overlay entry as a member: its encoding when it has
// one (SetFieldShared).
func appendOver(dst []byte, o *overField) []byte {
	if o.enc == nil {
		return appendMember(dst, o.key, o.val)
	}
	dst = AppendString(dst, o.key)
	dst = append(dst, ':')
	return append(dst, o.enc...)
}

func appendMember(dst []byte, key string, v any) []byte {
	dst = AppendString(dst, key)
	dst = append(dst, ':')
	return AppendValue(dst, v)
}
