// Package keystr turns the value of a key expression (sample, throttle) into
// a string, without allocating for strings.
package keystr

import (
	"fmt"
	"strconv"
)

// String returns v's text: strings as they are, integral numbers without a
// fraction, null as "".
func String(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case nil:
		return ""
	case float64:
		if t == float64(int64(t)) {
			return strconv.FormatInt(int64(t), 10)
		}
		return strconv.FormatFloat(t, 'g', -1, 64)
	case int:
		return strconv.Itoa(t)
	case int64:
		return strconv.FormatInt(t, 10)
	case bool:
		return strconv.FormatBool(t)
	}
	return fmt.Sprint(v)
}

// Hash is FNV-1a of s: stable across restarts and hosts.
func Hash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
