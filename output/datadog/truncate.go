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
			// Each byte removed from a value removes at least one byte of
			// the message's JSON string form.
			cut := len(v) - (n - budget) - 8
			if cut < 0 {
				cut = 0
			}
			for cut > 0 && !utf8.RuneStart(v[cut]) {
				cut--
			}
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
	if e.Partial {
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
