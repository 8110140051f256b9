package json

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"testing"
)

// needsAttention is specials' definition, byte by byte.
func needsAttention(c byte) bool { return c == '"' || c == '\\' || c < 0x20 || c >= 0x80 }

// firstSpecial is the index of the first byte of w that needs attention
// (8: none).
func firstSpecial(w [8]byte) int {
	for i, c := range w {
		if needsAttention(c) {
			return i
		}
	}
	return 8
}

func checkSpecials(t *testing.T, w [8]byte) {
	t.Helper()
	want := firstSpecial(w)
	sp := specials(binary.LittleEndian.Uint64(w[:]))
	got := 8
	if sp != 0 {
		got = bits.TrailingZeros64(sp) / 8
	}
	if got != want {
		t.Fatalf("specials(%q): first byte %d, want %d", w[:], got, want)
	}
}

// specials' lowest set bit is the first byte that needs attention: every
// byte value at every position after plain bytes (followed by bytes of
// every kind), and random words.
func TestSpecialsFindsTheFirstByte(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	fill := []byte{'a', ' ', '~', '!', '#', '[', ']', 0x7f, 0x21, 0x5b, 0x5d}
	for pos := range 8 {
		for c := range 256 {
			for f := range 64 {
				var w [8]byte
				for i := range w {
					switch {
					case i < pos:
						w[i] = fill[(i+f)%len(fill)]
					case i == pos:
						w[i] = byte(c)
					default:
						w[i] = byte(r.Uint32())
					}
				}
				checkSpecials(t, w)
			}
		}
	}
	for range 1 << 20 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], r.Uint64())
		// Mostly plain bytes, like log text, with the odd special one.
		for i := range w {
			if r.IntN(4) != 0 {
				w[i] = 0x20 + byte(r.IntN(0x60))
			}
		}
		checkSpecials(t, w)
	}
}
