package json

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sync/atomic"
)

// Duplicate keys (issue 20). Full parsing sees them for free: a map that
// ends smaller than its object's member count had one. The skip paths
// (validation only, and the objects a selection leaves out) build no map.
// There, a line without duplicates must cost what it did before the check,
// and log lines repeat a few shapes (the same keys in the same order), so:
//
//   - each object folds its keys, as they are skipped, into a 64-bit
//     signature (one multiply per key; nothing is stored);
//   - when the object closes, a table of signatures of key lists already
//     found free of duplicates is looked up (then one of lists found with
//     one): a known shape costs nothing more;
//   - otherwise (a new shape, or a key with an escape) the object's keys
//     are collected again (a rescan of the part just validated) and
//     compared, and the list's signature enters the table of its answer.
//
// A duplicate is a duplicate of decoded keys, as in the map: `"a"` and
// `"\u0061"` are the same key (Elasticsearch decodes them too). An object
// with an escaped key is therefore always compared, decoded, and enters
// no table.
//
// The table answers "no duplicate" for a new key list only if its 64-bit
// signature equals that of a list seen without duplicates: keys count
// whole (short keys as they are, longer ones hashed with per-process
// random seeds), so by chance this is a 2^-64 event per object. The hash
// is not cryptographic; were a crafted line to slip a duplicate through,
// it would be written raw and Elasticsearch would refuse it to the
// dead-letter with the reason, as before this check. An object whose keys
// vary on every line (a map keyed by ids) misses the table and pays the
// rescan.

// sigSeed starts every object's signature; midSeed and longSeed seed
// the words of keys of 8 bytes and more.
var (
	sigSeed  = rand.Uint64()
	midSeed  = rand.Uint64()
	longSeed = maphash.MakeSeed()
)

const sigMul = 0x9e3779b97f4a7c15 // odd: a multiply loses no bits

// shapes holds signatures of key lists found without duplicates, and
// dupShapes of lists found with one, indexed by their top 8 bits (shared
// by all parsers; atomic, so safe for concurrent use). An empty slot
// holds a value whose top 8 bits are not its index, so that it matches no
// signature. (A line of a known duplicate shape, say from an application
// that always writes one, costs no comparison either; were a signature to
// match dupShapes by chance, a line without duplicates would only be
// written from its fields: the same object.)
var shapes, dupShapes [256]atomic.Uint64

func init() {
	shapes[0].Store(1 << 63)
	dupShapes[0].Store(1 << 63)
}

// keyWord is the word a key b[a:e] (raw, between its quotes) folds into
// its object's signature: sig = (sig ^ word) * sigMul. The object loops
// inline its common cases. A key shorter than 8 bytes is its own bytes
// (little endian, zero above: no raw key byte is zero, so the word tells
// keys apart); a key of 8 to 16 bytes mixes its first and last 8 bytes
// and its length with a seed (midWord); a longer one is hashed whole
// (maphash).
//
//go:noinline
func keyWord(b []byte, a, e int) uint64 {
	switch n := e - a; {
	case n < 8:
		var w uint64
		for j := e - 1; j >= a; j-- {
			w = w<<8 | uint64(b[j])
		}
		return w
	case n <= 16:
		return midWord(binary.LittleEndian.Uint64(b[a:]), binary.LittleEndian.Uint64(b[e-8:]), n)
	default:
		return maphash.Bytes(longSeed, b[a:e])
	}
}

// midWord is the word of a key of 8 to 16 bytes: first and last are its
// first and last 8 bytes (they overlap when n < 16).
func midWord(first, last uint64, n int) uint64 {
	return ((first^midSeed)*0xff51afd7ed558ccd + uint64(n) ^ last) * 0xc4ceb9fe1a85ec53
}

// rescanBudget is how many bytes checkObject may walk again in a line of
// n bytes: a line's first sight walks it about twice (its nested objects,
// then the top level).
func rescanBudget(n int) int { return 4*n + 4096 }

// testHookCheck, when set, is called by each comparison of checkObject
// (tests: a known shape is not compared again).
var testHookCheck func()

// span is a key's raw bytes in buf (between its quotes).
type span struct{ a, b int32 }

// checkObject compares the keys of the object buf[open:end+1] (already
// validated, its signature sig), sets dup when two are equal, and
// remembers the answer for sig (unless a key has an escape).
//
// An object's rescan walks its nested values too, so nested new shapes
// could cost depth times the line (512 levels of 2 keys): past
// rescanBudget bytes walked in a line, the line is taken as having a
// duplicate without comparing, which is always safe (it is then written
// from its fields: the same object, normalised) and remembers nothing.
//
//go:noinline
func (s *scanner) checkObject(open, end int, sig uint64) {
	if s.dup {
		return
	}
	if dupShapes[sig>>56].Load() == sig {
		s.dup = true
		return
	}
	if s.rescanned += end - open; s.rescanned > rescanBudget(len(s.buf)) {
		s.dup = true
		return
	}
	if testHookCheck != nil {
		testHookCheck()
	}
	var small [32]span
	keys := small[:0]
	b := s.buf
	escapes := s.escAt > open // in the object, keys or values
	esc := false
	for i := skipWS(b, open+1); b[i] != '}'; {
		e := endString(b, i)
		keys = append(keys, span{int32(i + 1), int32(e - 1)})
		esc = esc || escapes && bytes.IndexByte(b[i+1:e-1], '\\') >= 0
		i = skipWS(b, e) // ':'
		i = skipWS(b, skipChecked(b, skipWS(b, i+1)))
		if b[i] == ',' {
			i = skipWS(b, i+1)
		}
	}
	switch {
	case esc:
		s.dup = s.dupDecoded(keys)
	case hasDup(b, keys):
		s.dup = true
		dupShapes[sig>>56].Store(sig)
	default:
		shapes[sig>>56].Store(sig)
	}
}

// hasDup reports whether two of keys (spans of b, without escapes) are
// equal. It may reorder keys.
func hasDup(b []byte, keys []span) bool {
	if len(keys) <= 16 {
		for i, x := range keys {
			for _, y := range keys[:i] {
				if x.b-x.a == y.b-y.a && string(b[x.a:x.b]) == string(b[y.a:y.b]) {
					return true
				}
			}
		}
		return false
	}
	slices.SortFunc(keys, func(x, y span) int { return bytes.Compare(b[x.a:x.b], b[y.a:y.b]) })
	for i := 1; i < len(keys); i++ {
		if string(b[keys[i].a:keys[i].b]) == string(b[keys[i-1].a:keys[i-1].b]) {
			return true
		}
	}
	return false
}

// dupDecoded reports whether two keys are equal once decoded, the way
// parseString decodes them for the map (rare: an object with an escaped
// key).
func (s *scanner) dupDecoded(keys []span) bool {
	dec := scanner{buf: s.buf}
	seen := make(map[string]struct{}, len(keys))
	for _, sp := range keys {
		key, _ := dec.parseString(int(sp.a) - 1)
		if _, ok := seen[key]; ok {
			return true
		}
		seen[key] = struct{}{}
	}
	return false
}

// endString returns the index after the closing quote of the validated
// string whose opening quote is at i. It looks 8 bytes at a time for a
// quote or a backslash (a validated string has no other special byte to
// care about).
func endString(b []byte, i int) int {
	for i++; ; {
		for i+8 <= len(b) {
			v := binary.LittleEndian.Uint64(b[i:])
			q, bs := v^(lsb*'"'), v^(lsb*'\\')
			if m := ((q-lsb)&^q | (bs-lsb)&^bs) & msb; m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		for b[i] != '"' && b[i] != '\\' {
			i++
		}
		if b[i] == '"' {
			return i + 1
		}
		i += 2 // an escape: its second byte is never the closing quote
	}
}

// skipChecked returns the index after the validated value at i.
func skipChecked(b []byte, i int) int {
	switch b[i] {
	case '"':
		return endString(b, i)
	case '{', '[':
		depth := 0
		for {
			switch b[i] {
			case '"':
				i = endString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
	}
	for i < len(b) {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}
