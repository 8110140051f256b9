package datadog

import (
	"strconv"
	"unicode/utf8"
)

// The client serialises request bodies with encoding/json, which escapes
// HTML characters (<, >, &) and U+2028/U+2029 as \uXXXX and writes invalid
// UTF-8 as \ufffd. The limits of the intake apply to those bytes, so the
// output measures strings exactly as encoding/json will write them.

// escLen[b] is the encoded length of ASCII byte b inside a JSON string.
var escLen = func() (t [utf8.RuneSelf]uint8) {
	for b := range utf8.RuneSelf {
		switch {
		case b == '"' || b == '\\' || b == '\b' || b == '\f' || b == '\n' || b == '\r' || b == '\t':
			t[b] = 2
		case b < 0x20 || b == '<' || b == '>' || b == '&':
			t[b] = 6
		default:
			t[b] = 1
		}
	}
	return t
}()

// jsonLen returns the length of s written as a JSON string by encoding/json,
// quotes included.
func jsonLen[S ~string | ~[]byte](s S) int {
	n := 2
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			n += int(escLen[b])
			i++
			continue
		}
		r, size := decodeRune(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			n += 6
		case r == '\u2028' || r == '\u2029':
			n += 6
		default:
			n += size
		}
		i += size
	}
	return n
}

func decodeRune[S ~string | ~[]byte](s S) (rune, int) {
	switch x := any(s).(type) {
	case string:
		return utf8.DecodeRuneInString(x)
	case []byte:
		return utf8.DecodeRune(x)
	}
	return utf8.DecodeRuneInString(string(s[:min(len(s), utf8.UTFMax)]))
}

// fitPrefix returns the length of the longest prefix of s, cut at a rune
// boundary, whose JSON string form is at most limit bytes.
func fitPrefix[S ~string | ~[]byte](s S, limit int) int {
	n := 2
	for i := 0; i < len(s); {
		b := s[i]
		w, size := 0, 1
		if b < utf8.RuneSelf {
			w = int(escLen[b])
		} else {
			var r rune
			r, size = decodeRune(s[i:])
			switch {
			case r == utf8.RuneError && size == 1:
				w = 6
			case r == '\u2028' || r == '\u2029':
				w = 6
			default:
				w = size
			}
		}
		if n+w > limit {
			return i
		}
		n += w
		i += size
	}
	return len(s)
}

// intLen is the length of v in decimal.
func intLen(v int64) int {
	var buf [24]byte
	return len(strconv.AppendInt(buf[:0], v, 10))
}
