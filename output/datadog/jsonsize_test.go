package datadog

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"unicode/utf8"

	"github.com/sidelog/sidelog/event"
)

// Pieces that stress the escaping: HTML characters, controls, quotes,
// backslashes, multi-byte runes, U+2028/2029, invalid bytes, DEL.
var pieces = []string{"a", "<", ">", "&", "\"", "\\", "\n", "\t", "\b", "\f", "\x01", "\x1f", "\x7f",
	"é", "€", "😀", "\u2028", "\u2029", "\xff", "\xe2\x82", "\xc3", " ", "{}", "\r"}

func randomString(rng *rand.Rand) string {
	var b []byte
	for range rng.IntN(40) {
		b = append(b, pieces[rng.IntN(len(pieces))]...)
	}
	return string(b)
}

// jsonLen agrees with encoding/json (the client's encoder) byte for byte.
func TestJSONLenMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20_000 {
		s := randomString(rng)
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := jsonLen(s); got != len(b) {
			t.Fatalf("%q: jsonLen %d, encoding/json %d (%s)", s, got, len(b), b)
		}
		if got := jsonLen([]byte(s)); got != len(b) {
			t.Fatalf("%q: []byte %d", s, got)
		}
	}
}

// fitPrefix finds the longest prefix that fits, at a rune boundary.
func TestFitPrefix(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 5_000 {
		s := randomString(rng)
		limit := 2 + rng.IntN(60)
		n := fitPrefix(s, limit)
		if jsonLen(s[:n]) > limit {
			t.Fatalf("%q limit %d: prefix %d too long", s, limit, n)
		}
		if n < len(s) {
			// the next character does not fit
			_, size := utf8.DecodeRuneInString(s[n:])
			if jsonLen(s[:n+size]) <= limit {
				t.Fatalf("%q limit %d: prefix %d could be longer", s, limit, n)
			}
			if n > 0 && utf8.ValidString(s) && !utf8.ValidString(s[:n]) {
				t.Fatalf("%q: cut inside a rune", s)
			}
		}
	}
}

// twiceLen is the size of a character once in the record's JSON
// (event.AppendString) and again in the message string (encoding/json).
func TestTwiceLen(t *testing.T) {
	for _, p := range pieces {
		if utf8.RuneCountInString(p) != 1 && p != "\xe2\x82" {
			continue
		}
		once := event.AppendString(nil, p)
		want := jsonLen(once[1:len(once)-1]) - 2
		if p == "\xe2\x82" { // two invalid bytes: two U+FFFD
			continue
		}
		if got := twiceLen(p); got != want {
			t.Errorf("%q: twiceLen %d, want %d", p, got, want)
		}
	}
}
