package json

import (
	"encoding/binary"
	stdjson "encoding/json"
	"math/bits"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/sidelog/sidelog/event"
)

// maxDepth bounds nesting so that a hostile line cannot exhaust the stack.
const maxDepth = 512

// errCode says why a line is not valid JSON.
type errCode uint8

const (
	errNone errCode = iota
	errEOF
	errChar
	errNotObject
	errDepth
	errTrailing
	errEscape
	errControl
)

// scanner walks one line. In validation mode it only checks; in build mode
// it also produces Go values. When owned is set, buf is a private copy of
// the line: strings alias it and escapes are decoded in place (a decoded
// string is never longer than its quoted form). Otherwise every string is
// allocated.
type scanner struct {
	buf     []byte
	owned   bool
	intern  *internTable // short selected string values, boxed once
	badUTF8 bool
	depth   int
	err     errCode
	errPos  int
	// dup: an object of the line holds a key twice (see dupkey.go).
	// escAt is the offset of the last escape skipped or decoded (0: none
	// yet: the line holds no backslash if it stays 0 to the end);
	// rescanned counts the bytes checkObject walked again.
	dup       bool
	escAt     int
	rescanned int
}

func (s *scanner) fail(c errCode, i int) int {
	if s.err == errNone {
		s.err, s.errPos = c, i
	}
	return -1
}

// reason renders the error for the parse_error field.
func (s *scanner) reason() string {
	switch s.err {
	case errEOF:
		return "json: unexpected end of line"
	case errNotObject:
		return "json: not an object"
	case errDepth:
		return "json: nesting too deep at offset " + strconv.Itoa(s.errPos)
	case errTrailing:
		return "json: data after the object at offset " + strconv.Itoa(s.errPos)
	case errEscape:
		return "json: invalid escape at offset " + strconv.Itoa(s.errPos)
	case errControl:
		return "json: control character in string at offset " + strconv.Itoa(s.errPos)
	}
	if s.errPos < len(s.buf) {
		return "json: invalid character " + strconv.QuoteRune(rune(s.buf[s.errPos])) + " at offset " + strconv.Itoa(s.errPos)
	}
	return "json: unexpected end of line"
}

// isWS reports JSON white space; most bytes are above ' ', so one
// comparison usually answers.
func isWS(c byte) bool { return c <= ' ' && (c == ' ' || c == '\t' || c == '\n' || c == '\r') }

func skipWS(b []byte, i int) int {
	for i < len(b) && isWS(b[i]) {
		i++
	}
	return i
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// specials has the high bit of each byte of v (little endian) that needs
// attention inside a string set; bits above the lowest may be spurious.
//
// A byte's high bit comes out set when the byte is '"' or '\\' (its xor is
// 0, and 0 - 1 borrows), below 0x20 (the subtraction borrows), at least
// 0x80 (v itself), or when a borrow from a lower byte reaches it. Borrows
// start only at one of the first three kinds, and a byte of the other
// bytes gets no high bit from the subtractions (x - 1 and x - 0x20 of a
// byte below 0x80 stay below 0x80 without a borrow; the xors of a byte
// below 0x80 stay below 0x80). So the lowest set bit is the first byte
// that needs attention, without masking each term with &^ (the classic
// "has zero byte" needs it to reject bytes above 0x80, which v itself
// flags here).
func specials(v uint64) uint64 {
	return (((v ^ (lsb * '"')) - lsb) | ((v ^ (lsb * '\\')) - lsb) | (v - lsb*0x20) | v) & msb
}

// word returns the 8 bytes of b at i (little endian); the caller checked
// that i+8 <= len(b). Without the bounds checks of b[i:] (the scan's inner
// loop spent about as many instructions on them as on specials).
func word(b []byte, i int) uint64 {
	return binary.LittleEndian.Uint64(unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), i)), 8))
}

// plainRun returns how many leading bytes of b[i:] need no attention inside
// a string: not '"', not '\\', not a control character, ASCII.
func plainRun(b []byte, i int) int {
	start := i
	for i+8 <= len(b) {
		if special := specials(binary.LittleEndian.Uint64(b[i:])); special != 0 {
			return i - start + bits.TrailingZeros64(special)/8
		}
		i += 8
	}
	for i < len(b) {
		c := b[i]
		if c == '"' || c == '\\' || c < 0x20 || c >= 0x80 {
			break
		}
		i++
	}
	return i - start
}

func hexVal(c byte) rune {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0')
	case c >= 'a' && c <= 'f':
		return rune(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return rune(c-'A') + 10
	}
	return -1
}

func hex4(b []byte, i int) rune {
	if i+4 > len(b) {
		return -1
	}
	var r rune
	for k := 0; k < 4; k++ {
		h := hexVal(b[i+k])
		if h < 0 {
			return -1
		}
		r = r<<4 | h
	}
	return r
}

// plainTo returns the index of the first byte at or after i that needs
// attention inside a string, looking 8 bytes at a time; when fewer than 8
// bytes remain before finding one, it returns where it stopped (the
// caller's skipString goes on from there). Small enough to be inlined:
// skipObject finds most strings' closing quote with it, without a call.
func plainTo(b []byte, i int) int {
	for i+8 <= len(b) {
		if sp := specials(word(b, i)); sp != 0 {
			return i + bits.TrailingZeros64(sp)/8
		}
		i += 8
	}
	return i
}

// skipString checks the string whose opening quote is at i and returns the
// index after its closing quote, or -1. It never reads b[i] itself: called
// with i-1, it checks the rest of a string from i (skipObject, after
// plainTo stopped inside it).
func (s *scanner) skipString(i int) int {
	b := s.buf
	i++
	for {
		// plainRun, inlined by hand: one call fewer per string (it pays
		// for the duplicate-key check, see dupkey.go).
		for i+8 <= len(b) {
			if sp := specials(word(b, i)); sp != 0 {
				i += bits.TrailingZeros64(sp) / 8
				goto special
			}
			i += 8
		}
		for i < len(b) {
			if c := b[i]; c == '"' || c == '\\' || c < 0x20 || c >= 0x80 {
				break
			}
			i++
		}
	special:
		if i >= len(b) {
			return s.fail(errEOF, i)
		}
		c := b[i]
		switch {
		case c == '"':
			return i + 1
		case c == '\\':
			if i+1 >= len(b) {
				return s.fail(errEOF, i)
			}
			s.escAt = i
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if hex4(b, i+2) < 0 {
					return s.fail(errEscape, i)
				}
				i += 6
			default:
				return s.fail(errEscape, i)
			}
		case c < 0x20:
			return s.fail(errControl, i)
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n == 1 {
				s.badUTF8 = true
			}
			i += n
		}
	}
}

// parseString returns the string whose opening quote is at i, and the index
// after its closing quote (or -1).
func (s *scanner) parseString(i int) (string, int) {
	b := s.buf
	start := i + 1
	i = start
	i += plainRun(b, i)
	if i < len(b) && b[i] == '"' { // fast path: nothing to decode
		if s.owned {
			return unsafe.String(unsafe.SliceData(b[start:]), i-start), i + 1
		}
		return string(b[start:i]), i + 1
	}
	// Slow path: escapes or non-ASCII.
	var out []byte
	w := start // in-place write cursor (owned)
	if !s.owned {
		out = make([]byte, 0, i-start+16)
		out = append(out, b[start:i]...)
	} else {
		w = i
	}
	put := func(p []byte) {
		if s.owned {
			w += copy(b[w:], p)
		} else {
			out = append(out, p...)
		}
	}
	for {
		n := plainRun(b, i)
		if n > 0 {
			put(b[i : i+n])
			i += n
		}
		if i >= len(b) {
			return "", s.fail(errEOF, i)
		}
		c := b[i]
		switch {
		case c == '"':
			if s.owned {
				return unsafe.String(unsafe.SliceData(b[start:]), w-start), i + 1
			}
			return string(out), i + 1
		case c == '\\':
			if i+1 >= len(b) {
				return "", s.fail(errEOF, i)
			}
			s.escAt = i
			var one [4]byte
			switch e := b[i+1]; e {
			case '"', '\\', '/':
				one[0] = e
				put(one[:1])
				i += 2
			case 'b', 'f', 'n', 'r', 't':
				one[0] = unescape(e)
				put(one[:1])
				i += 2
			case 'u':
				r := hex4(b, i+2)
				if r < 0 {
					return "", s.fail(errEscape, i)
				}
				i += 6
				if utf16IsSurrogate(r) {
					r2 := rune(-1)
					if i+1 < len(b) && b[i] == '\\' && b[i+1] == 'u' {
						r2 = hex4(b, i+2)
					}
					if dec := utf16Decode(r, r2); dec != utf8.RuneError {
						r = dec
						i += 6
					} else {
						r = utf8.RuneError
					}
				}
				n := utf8.EncodeRune(one[:], r)
				put(one[:n])
			default:
				return "", s.fail(errEscape, i)
			}
		case c < 0x20:
			return "", s.fail(errControl, i)
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n == 1 {
				s.badUTF8 = true // kept as is
			}
			put(b[i : i+n])
			i += n
		}
	}
}

// parseStringAny is parseString for a value stored in a map: a short
// string without escapes comes boxed from the intern table, so a repeated
// value (a level, a service name) costs no allocation.
func (s *scanner) parseStringAny(i int) (any, int) {
	b := s.buf
	start := i + 1
	n := plainRun(b, start)
	if end := start + n; end < len(b) && b[end] == '"' && n <= maxInterned {
		return s.intern.get(b[start:end]), end + 1
	}
	return s.parseString(i)
}

func unescape(e byte) byte {
	switch e {
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	}
	return '\t'
}

func utf16IsSurrogate(r rune) bool { return r >= 0xd800 && r < 0xe000 }

func utf16Decode(r1, r2 rune) rune {
	if r1 >= 0xd800 && r1 < 0xdc00 && r2 >= 0xdc00 && r2 < 0xe000 {
		return (r1-0xd800)<<10 | (r2 - 0xdc00) + 0x10000
	}
	return utf8.RuneError
}

// skipNumber checks the number at i and returns the index after it and
// whether it is an integer (no fraction, no exponent).
func (s *scanner) skipNumber(i int) (int, bool) {
	b := s.buf
	integer := true
	if i < len(b) && b[i] == '-' {
		i++
	}
	if i >= len(b) {
		return s.fail(errEOF, i), false
	}
	switch c := b[i]; {
	case c == '0':
		i++
	case c >= '1' && c <= '9':
		i++
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return s.fail(errChar, i), false
	}
	if i < len(b) && b[i] == '.' {
		integer = false
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return s.fail(charOrEOF(b, i), i), false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		integer = false
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return s.fail(charOrEOF(b, i), i), false
		}
	}
	return i, integer
}

func charOrEOF(b []byte, i int) errCode {
	if i >= len(b) {
		return errEOF
	}
	return errChar
}

// number converts a checked number: int64 when it is an integer that fits,
// float64 otherwise, json.Number when even float64 overflows.
// smallInts holds int64(i) boxed, for the small integers lines repeat
// (status codes, latencies in milliseconds, counts): a selected or parsed
// one costs no allocation. Nobody can change a boxed value.
var smallInts = func() (t [1024]any) {
	for i := range t {
		t[i] = int64(i)
	}
	return t
}()

func number(t []byte, integer bool) any {
	if integer && len(t) <= 18 {
		neg := t[0] == '-'
		d := t
		if neg {
			d = t[1:]
		}
		var n int64
		for _, c := range d {
			n = n*10 + int64(c-'0')
		}
		if neg {
			n = -n
		} else if n < int64(len(smallInts)) {
			return smallInts[n] // boxed once (Go boxes only 0-255 without allocating)
		}
		return n
	}
	str := unsafe.String(unsafe.SliceData(t), len(t))
	if integer {
		if n, err := strconv.ParseInt(str, 10, 64); err == nil {
			return n
		}
	}
	f, err := strconv.ParseFloat(str, 64)
	if err != nil {
		return stdjson.Number(string(t))
	}
	return f
}

func (s *scanner) literal(i int, lit string) int {
	b := s.buf
	if len(b)-i < len(lit) {
		if string(b[i:]) == lit[:len(b)-i] {
			return s.fail(errEOF, len(b))
		}
		return s.fail(errChar, i)
	}
	if string(b[i:i+len(lit)]) != lit {
		return s.fail(errChar, i)
	}
	return i + len(lit)
}

// skipValue checks the value at i (no leading space) and returns the index
// after it, or -1.
func (s *scanner) skipValue(i int) int {
	b := s.buf
	if i >= len(b) {
		return s.fail(errEOF, i)
	}
	switch c := b[i]; c {
	case '{':
		return s.skipObject(i)
	case '[':
		return s.skipArray(i)
	case '"':
		return s.skipString(i)
	case 't':
		return s.literal(i, "true")
	case 'f':
		return s.literal(i, "false")
	case 'n':
		return s.literal(i, "null")
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			j, _ := s.skipNumber(i)
			return j
		}
		return s.fail(errChar, i)
	}
}

func (s *scanner) skipObject(i int) int {
	b := s.buf
	if s.depth++; s.depth > maxDepth {
		return s.fail(errDepth, i)
	}
	open := i
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		s.depth--
		return i + 1
	}
	sig := sigSeed // duplicate keys: see dupkey.go
	for {
		if i >= len(b) {
			return s.fail(errEOF, i)
		}
		if b[i] != '"' {
			return s.fail(errChar, i)
		}
		ks := i
		if i = plainTo(b, i+1); i < len(b) && b[i] == '"' {
			i++
		} else if i = s.skipString(i - 1); i < 0 { // the rest of the key
			return -1
		}
		// the key's word (keyWord), its common cases inlined by hand
		if n := i - ks - 2; n < 8 && ks+9 <= len(b) {
			sig = (sig ^ binary.LittleEndian.Uint64(b[ks+1:])&(1<<(n*8&63)-1)) * sigMul
		} else if n >= 8 && n <= 16 {
			sig = (sig ^ midWord(binary.LittleEndian.Uint64(b[ks+1:]), binary.LittleEndian.Uint64(b[i-9:]), n)) * sigMul
		} else {
			sig = (sig ^ keyWord(b, ks+1, i-1)) * sigMul
		}
		if i = skipWS(b, i); i >= len(b) {
			return s.fail(errEOF, i)
		}
		if b[i] != ':' {
			return s.fail(errChar, i)
		}
		// skipValue, its common cases inlined by hand: one call fewer
		if i = skipWS(b, i+1); i >= len(b) {
			return s.fail(errEOF, i)
		} else if c := b[i]; c == '"' {
			if i = plainTo(b, i+1); i < len(b) && b[i] == '"' {
				i++
			} else {
				i = s.skipString(i - 1) // the rest of the string
			}
		} else if c >= '0' && c <= '9' || c == '-' {
			i, _ = s.skipNumber(i)
		} else {
			i = s.skipValue(i)
		}
		if i < 0 {
			return -1
		}
		if i = skipWS(b, i); i >= len(b) {
			return s.fail(errEOF, i)
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			s.depth--
			if shapes[sig>>56].Load() != sig {
				s.checkObject(open, i, sig)
			}
			return i + 1
		default:
			return s.fail(errChar, i)
		}
	}
}

func (s *scanner) skipArray(i int) int {
	b := s.buf
	if s.depth++; s.depth > maxDepth {
		return s.fail(errDepth, i)
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		s.depth--
		return i + 1
	}
	for {
		if i = s.skipValue(i); i < 0 {
			return -1
		}
		if i = skipWS(b, i); i >= len(b) {
			return s.fail(errEOF, i)
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case ']':
			s.depth--
			return i + 1
		default:
			return s.fail(errChar, i)
		}
	}
}

// parseValue builds the value at i (no leading space).
func (s *scanner) parseValue(i int) (any, int) {
	b := s.buf
	if i >= len(b) {
		return nil, s.fail(errEOF, i)
	}
	switch c := b[i]; c {
	case '{':
		m := make(map[string]any)
		return m, s.parseObject(i, m)
	case '[':
		return s.parseArray(i)
	case '"':
		return s.parseString(i)
	case 't':
		return true, s.literal(i, "true")
	case 'f':
		return false, s.literal(i, "false")
	case 'n':
		return nil, s.literal(i, "null")
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			j, integer := s.skipNumber(i)
			if j < 0 {
				return nil, j
			}
			return number(b[i:j], integer), j
		}
		return nil, s.fail(errChar, i)
	}
}

// parseObject fills m from the object at i. A duplicate key shows as a map
// that ends smaller than the object's member count.
func (s *scanner) parseObject(i int, m map[string]any) int {
	b := s.buf
	if s.depth++; s.depth > maxDepth {
		return s.fail(errDepth, i)
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		s.depth--
		return i + 1
	}
	members := 0
	for {
		if i >= len(b) {
			return s.fail(errEOF, i)
		}
		if b[i] != '"' {
			return s.fail(errChar, i)
		}
		var key string
		if key, i = s.parseString(i); i < 0 {
			return -1
		}
		members++
		if i = skipWS(b, i); i >= len(b) {
			return s.fail(errEOF, i)
		}
		if b[i] != ':' {
			return s.fail(errChar, i)
		}
		var v any
		if v, i = s.parseValue(skipWS(b, i+1)); i < 0 {
			return -1
		}
		m[key] = v
		if i = skipWS(b, i); i >= len(b) {
			return s.fail(errEOF, i)
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			s.depth--
			if len(m) != members {
				s.dup = true
			}
			return i + 1
		default:
			return s.fail(errChar, i)
		}
	}
}

// selectObject gives e (AddField) the members of the object at i whose
// keys want returns true for, under the key string that want returns (no
// allocation); their string values go through s.intern when set. lens has
// keyLenBit of each selected key's length. The other values are only
// checked, and the keys are checked for duplicates as skipObject does
// (dupkey.go).
func (s *scanner) selectObject(i int, e *event.Event, want func(key []byte) (string, bool), lens uint64) int {
	b := s.buf
	if s.depth++; s.depth > maxDepth {
		return s.fail(errDepth, i)
	}
	open := i
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		s.depth--
		return i + 1
	}
	sig := sigSeed
	for {
		if i >= len(b) {
			return s.fail(errEOF, i)
		}
		if b[i] != '"' {
			return s.fail(errChar, i)
		}
		ks, ke := i, -1 // ke: where the key ends when it has no escape
		if i = plainTo(b, i+1); i < len(b) && b[i] == '"' {
			i++
		} else if i = s.skipString(i - 1); i < 0 { // the rest of the key
			return -1
		}
		// the key's word (keyWord), its common cases inlined by hand
		if n := i - ks - 2; n < 8 && ks+9 <= len(b) {
			sig = (sig ^ binary.LittleEndian.Uint64(b[ks+1:])&(1<<(n*8&63)-1)) * sigMul
		} else if n >= 8 && n <= 16 {
			sig = (sig ^ midWord(binary.LittleEndian.Uint64(b[ks+1:]), binary.LittleEndian.Uint64(b[i-9:]), n)) * sigMul
		} else {
			sig = (sig ^ keyWord(b, ks+1, i-1)) * sigMul
		}
		if s.escAt < ks {
			ke = i - 1
		}
		if i = skipWS(b, i); i >= len(b) {
			return s.fail(errEOF, i)
		}
		if b[i] != ':' {
			return s.fail(errChar, i)
		}
		i = skipWS(b, i+1)
		// lens: a key of no selected length (known unless escaped) is
		// not wanted, without the call
		if ke >= 0 && lens&keyLenBit(ke-ks-1) == 0 {
			if i < len(b) && b[i] == '"' {
				i = s.skipString(i)
			} else {
				i = s.skipValue(i)
			}
			if i < 0 {
				return -1
			}
		} else if k, ok := s.wanted(want, ks, ke); ok {
			var v any
			var j int
			if s.intern != nil && i < len(b) && b[i] == '"' {
				v, j = s.parseStringAny(i)
			} else {
				v, j = s.parseValue(i)
			}
			if j < 0 {
				return -1
			}
			e.AddField(k, v)
			i = j
		} else {
			if i < len(b) && b[i] == '"' {
				// the common value: one call fewer, none if plain
				if i = plainTo(b, i+1); i < len(b) && b[i] == '"' {
					i++
				} else {
					i = s.skipString(i - 1)
				}
			} else {
				i = s.skipValue(i)
			}
			if i < 0 {
				return -1
			}
		}
		if i = skipWS(b, i); i >= len(b) {
			return s.fail(errEOF, i)
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			s.depth--
			if shapes[sig>>56].Load() != sig {
				s.checkObject(open, i, sig)
			}
			return i + 1
		default:
			return s.fail(errChar, i)
		}
	}
}

// wanted asks want about the (checked) key whose opening quote is at ks;
// when ke >= 0 the key has no escape and ends at ke (its raw bytes are
// its decoded bytes).
// keyLenBit is the bit of a key's length in a set of lengths (one bit for
// 63 bytes and longer).
func keyLenBit(n int) uint64 { return 1 << min(n, 63) }

func (s *scanner) wanted(want func([]byte) (string, bool), ks, ke int) (string, bool) {
	b := s.buf
	if ke >= 0 {
		return want(b[ks+1 : ke])
	}
	n := plainRun(b, ks+1)
	if b[ks+1+n] == '"' {
		return want(b[ks+1 : ks+1+n])
	}
	k, _ := s.parseString(ks)
	return want([]byte(k))
}

func (s *scanner) parseArray(i int) (any, int) {
	b := s.buf
	if s.depth++; s.depth > maxDepth {
		return nil, s.fail(errDepth, i)
	}
	arr := []any{}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		s.depth--
		return arr, i + 1
	}
	for {
		var v any
		if v, i = s.parseValue(i); i < 0 {
			return nil, -1
		}
		arr = append(arr, v)
		if i = skipWS(b, i); i >= len(b) {
			return nil, s.fail(errEOF, i)
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case ']':
			s.depth--
			return arr, i + 1
		default:
			return nil, s.fail(errChar, i)
		}
	}
}
