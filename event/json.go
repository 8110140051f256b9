package event

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends the record as one JSON object (no newline) to dst.
//
// When the parser found Raw to be a JSON object (RawJSON) and no stage has
// modified the record through Mutable, Raw is the base: written verbatim
// when there is no overlay (the cheapest path, and the exact bytes the
// application wrote), else member by member with the overlay's changes
// (untouched members verbatim in their order, set fields in place, new
// fields at the end; see SetField). Otherwise Fields are serialised with
// their keys sorted. Output is deterministic either way. Invalid UTF-8 is
// written as U+FFFD (RawJSON implies Raw has none). `meta` is never
// written: it lives outside Fields.
func AppendJSON(dst []byte, e *Event) []byte {
	if e.Flags&(RawJSON|Modified) == RawJSON {
		if len(e.over) == 0 {
			return append(dst, e.Raw...)
		}
		if out, ok := appendOverlay(dst, e); ok {
			return out
		}
	}
	if e.Partial || e.npairs != 0 {
		e.Full()
	}
	if e.Fields == nil {
		dst = append(dst, `{"message":`...)
		dst = AppendString(dst, e.Raw)
		return append(dst, '}')
	}
	return AppendValue(dst, e.Fields)
}

// MaxDepth bounds the nesting of objects and arrays that AppendValue writes
// (the JSON parser accepts 512 levels; stages may add a few). A value nested
// deeper, or a cyclic one (a map that holds itself), is written as the
// string DepthExceeded at the level where the limit is reached instead of
// recursing until the stack overflows. The filters that build values check
// the same limit (CheckDepth) and refuse to store such a value, counting a
// per-record error, so this is the last line of defence.
const MaxDepth = 1024

// DepthExceeded is written in place of a value nested deeper than MaxDepth.
const DepthExceeded = "[sidelog: value nested deeper than 1024 levels or cyclic]"

// ErrTooDeep is CheckDepth's error.
var ErrTooDeep = errors.New("value nested deeper than 1024 levels (or cyclic)")

// CheckDepth returns ErrTooDeep when v holds objects or arrays nested deeper
// than MaxDepth, which a cyclic value always does. It never recurses past
// the limit.
func CheckDepth(v any) error {
	if !depthOK(v, 0) {
		return ErrTooDeep
	}
	return nil
}

func depthOK(v any, depth int) bool {
	switch x := v.(type) {
	case map[string]any:
		if depth >= MaxDepth {
			return false
		}
		for _, el := range x {
			if !depthOK(el, depth+1) {
				return false
			}
		}
	case []any:
		if depth >= MaxDepth {
			return false
		}
		for _, el := range x {
			if !depthOK(el, depth+1) {
				return false
			}
		}
	}
	return true
}

// AppendValue appends v as JSON. Objects and arrays nested deeper than
// MaxDepth (or cyclic) are cut at the limit: see DepthExceeded.
func AppendValue(dst []byte, v any) []byte {
	return appendValue(dst, v, 0)
}

func appendValue(dst []byte, v any, depth int) []byte {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...)
	case string:
		return AppendString(dst, x)
	case []byte:
		return AppendString(dst, x)
	case bool:
		return strconv.AppendBool(dst, x)
	case int:
		return strconv.AppendInt(dst, int64(x), 10)
	case int64:
		return strconv.AppendInt(dst, x, 10)
	case int32:
		return strconv.AppendInt(dst, int64(x), 10)
	case uint64:
		return strconv.AppendUint(dst, x, 10)
	case float64:
		return appendFloat(dst, x)
	case float32:
		return appendFloat(dst, float64(x))
	case json.Number:
		if x == "" {
			return append(dst, '0')
		}
		return append(dst, x...)
	case time.Time:
		dst = append(dst, '"')
		dst = x.UTC().AppendFormat(dst, time.RFC3339Nano)
		return append(dst, '"')
	case time.Duration:
		return AppendString(dst, x.String())
	case *Meta:
		if x == nil {
			return append(dst, "null"...)
		}
		return AppendValue(dst, *x)
	case Meta:
		dst = append(dst, `{"input":`...)
		dst = AppendString(dst, x.Input)
		dst = append(dst, `,"path":`...)
		dst = AppendString(dst, x.Path)
		dst = append(dst, `,"time":`...)
		dst = AppendValue(dst, x.Time)
		return append(dst, '}')
	case map[string]any:
		if depth >= MaxDepth {
			return AppendString(dst, DepthExceeded)
		}
		return appendMap(dst, x, depth+1)
	case []any:
		if depth >= MaxDepth {
			return AppendString(dst, DepthExceeded)
		}
		dst = append(dst, '[')
		for i, el := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendValue(dst, el, depth+1)
		}
		return append(dst, ']')
	case []string:
		dst = append(dst, '[')
		for i, el := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendString(dst, el)
		}
		return append(dst, ']')
	}
	if depth >= MaxDepth {
		return AppendString(dst, DepthExceeded)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return AppendString(dst, err.Error())
	}
	return append(dst, b...)
}

func appendMap(dst []byte, m map[string]any, depth int) []byte {
	var stack [32]string
	keys := stack[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendString(dst, k)
		dst = append(dst, ':')
		dst = appendValue(dst, m[k], depth)
	}
	return append(dst, '}')
}

func appendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	} else if out, ok := appendMicros(dst, f, abs); ok {
		return out
	}
	return strconv.AppendFloat(dst, f, format, -1, 64)
}

// appendMicros writes f as strconv.AppendFloat(dst, f, 'f', -1, 64) does,
// without its general algorithm, when f is a whole number of millionths
// (a latency computed from milliseconds, a ratio with few digits): d =
// f·10^6 is an integer with d / 10^6 == f (both exact in float64, so the
// division rounds as reading the decimal does). With d < 2^50 no other
// integer lies within f's rounding interval times 10^6 (its width
// ulp(f)·10^6 < 1/4), so every decimal with at most 6 fractional digits
// that reads back as f is d·10^-6 with trailing zeros dropped: the
// shortest one, which strconv writes. ok is false otherwise (and for 0:
// the sign of -0).
func appendMicros(dst []byte, f, abs float64) ([]byte, bool) {
	x := abs * 1e6
	if abs == 0 || x >= 1<<50 {
		return dst, false
	}
	d := math.Round(x)
	// d is that integer only if x is within x·2^-52 of it
	if math.Abs(x-d) > x*(1.0/(1<<50)) || d/1e6 != abs {
		return dst, false
	}
	if f < 0 {
		dst = append(dst, '-')
	}
	u := uint64(d)
	dst = strconv.AppendUint(dst, u/1e6, 10)
	frac := u % 1e6
	if frac == 0 {
		return dst, true
	}
	digits := 6
	for frac%10 == 0 {
		frac /= 10
		digits--
	}
	dst = append(dst, '.')
	var buf [6]byte
	for i := digits - 1; i >= 0; i-- {
		buf[i] = byte('0' + frac%10)
		frac /= 10
	}
	return append(dst, buf[:digits]...), true
}

const hexDigits = "0123456789abcdef"

// safe[b] is true for ASCII bytes that need no escaping in a JSON string.
var safe = func() (t [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

// AppendString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func AppendString[S ~string | ~[]byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if safe[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		var r rune
		var size int
		switch x := any(s).(type) {
		case string:
			r, size = utf8.DecodeRuneInString(x[i:])
		case []byte:
			r, size = utf8.DecodeRune(x[i:])
		default:
			r, size = utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		}
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\ufffd"...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
