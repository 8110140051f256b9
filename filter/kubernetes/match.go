package kubernetes

import "strings"

// include decides which label and annotation keys are copied into records:
// a key is copied when it matches one of the globs (`*` matches any run of
// characters, '/' included; `?` one character). A secret-looking key (see
// secretLooking) is copied only when a pattern names it exactly, without
// wildcards.
type include struct {
	patterns []string
}

func (in include) match(key string) bool {
	for _, p := range in.patterns {
		if p == key {
			return true
		}
	}
	if secretLooking(key) {
		return false
	}
	for _, p := range in.patterns {
		if glob(p, key) {
			return true
		}
	}
	return false
}

func (in include) filter(m map[string]string) map[string]string {
	if len(m) == 0 || len(in.patterns) == 0 {
		return nil
	}
	var out map[string]string
	for k, v := range m {
		if in.match(k) {
			if out == nil {
				out = make(map[string]string, len(m))
			}
			out[k] = v
		}
	}
	return out
}

// secretWords mark a key that may carry a credential: such keys are never
// copied by a glob. kubectl's last-applied-configuration annotation holds a
// whole manifest (environment values included).
var secretWords = []string{"secret", "token", "password", "passwd", "credential", "apikey", "api-key", "api_key", "private", "auth", "cert", "last-applied-configuration"}

func secretLooking(key string) bool {
	k := strings.ToLower(key)
	for _, w := range secretWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// glob matches s against p: `*` any run of characters, `?` one byte.
func glob(p, s string) bool {
	// The classic two-pointer match with one backtrack point.
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
