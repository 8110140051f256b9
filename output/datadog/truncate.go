package datadog

import (
	"maps"
	"unicode/utf8"

	"github.com/sidelog/sidelog/event"
)

// truncateRecord shortens the record JSON written at dst[msgAt:] so that, as
// a JSON string, it takes at most budget bytes. It returns dst and that
// length.
//
// First it tries to keep the message valid JSON: it cuts the longest string
// fields of a copy of the record (the event itself is shared with other
// outputs and is not changed) and adds "truncated": true, so the intake
// still parses the record into attributes. When that cannot work (the bulk
// is in nested objects or arrays), the JSON text itself is cut at a UTF-8
// boundary and sent as a plain-text message. Either way the entry carries
// the top-level attribute "truncated": true.
func truncateRecord(dst []byte, msgAt int, e *event.Event, budget int) ([]byte, int) {
	orig := append([]byte(nil), dst[msgAt:]...)
	if fields := recordFields(e); fields != nil {
		m := maps.Clone(fields)
		m["truncated"] = true
		for range 8 {
			dst = event.AppendValue(dst[:msgAt], m)
			n := jsonLen(dst[msgAt:])
			if n <= budget {
				return dst, n
			}
			k, v := longestString(m)
			if k == "" {
				break
			}
			cut := cutFor(v, n-budget)
			m[k] = v[:cut]
		}
	}
	cut := fitPrefix(orig, budget)
	dst = append(dst[:msgAt], orig[:cut]...)
	return dst, jsonLen(dst[msgAt:])
}

// recordFields returns the record's fields as AppendJSON sees them, or nil
// when there are none to cut.
func recordFields(e *event.Event) map[string]any {
	if e.Partial || e.HasFields() {
		e.Full()
	}
	if e.Fields == nil {
		// AppendJSON writes {"message": raw} for an unparsed line.
		return map[string]any{"message": string(e.Raw)}
	}
	if len(e.Fields) == 0 {
		return nil
	}
	return e.Fields
}

// longestString returns the top-level string field with the longest value
// (ties broken by key, for determinism), or "" when no string is left.
func longestString(m map[string]any) (key, val string) {
	for k, v := range m {
		s, ok := v.(string)
		if !ok {
			if b, isBytes := v.([]byte); isBytes {
				s, ok = string(b), true
			}
		}
		if !ok || s == "" {
			continue
		}
		if len(s) > len(val) || (len(s) == len(val) && k < key) {
			key, val = k, s
		}
	}
	return key, val
}

// cutFor returns the length of the longest prefix of v (at a rune boundary)
// such that dropping the rest shrinks the message's JSON string form by at
// least excess bytes. A character of v appears in the message escaped twice:
// once in the record's JSON, once in the message string.
func cutFor(v string, excess int) int {
	gain := 0
	i := len(v)
	for i > 0 && gain < excess {
		j := i - 1
		for j > 0 && !utf8.RuneStart(v[j]) {
			j--
		}
		gain += twiceLen(v[j:i])
		i = j
	}
	return i
}

// twiceLen is the size of one character (or an invalid byte) once written
// in a JSON string by event.AppendString and that again by encoding/json.
func twiceLen(r string) int {
	if len(r) == 1 && r[0] < utf8.RuneSelf {
		switch b := r[0]; {
		case b == '"' || b == '\\':
			return 4 // \" -> \\\"
		case b == '\n' || b == '\r' || b == '\t':
			return 3 // \n -> \\n
		case b < 0x20:
			return 7 // \u00XX -> \\u00XX
		default:
			return int(escLen[b])
		}
	}
	c, size := utf8.DecodeRuneInString(r)
	switch {
	case c == utf8.RuneError && size == 1:
		return 3 // U+FFFD
	case c == '\u2028' || c == '\u2029':
		return 7
	}
	return len(r)
}
