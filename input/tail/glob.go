package tail

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// Globs with "**": a "**" segment matches zero or more directories. Other
// segments follow filepath.Match. Symbolic links to files are followed when
// the file is opened; "**" does not descend into symbolic links to
// directories (no loops), but a literal or pattern segment does.

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// checkPattern reports a malformed pattern.
func checkPattern(p string) error {
	if p == "" {
		return errors.New("empty pattern")
	}
	for _, s := range strings.Split(p, "/") {
		if strings.Contains(s, "**") && s != "**" {
			return errors.New(`"**" must be a whole path segment`)
		}
		if _, err := filepath.Match(s, ""); err != nil {
			return err
		}
	}
	return nil
}

// glob calls visit for every path matching pattern (absolute, cleaned).
func glob(pattern string, visit func(path string)) {
	pattern = filepath.Clean(pattern)
	segs := strings.Split(pattern, "/")
	if segs[0] == "" { // absolute
		walkGlob("/", segs[1:], visit)
		return
	}
	walkGlob(".", segs, visit)
}

func walkGlob(dir string, segs []string, visit func(string)) {
	if len(segs) == 0 {
		visit(dir)
		return
	}
	s := segs[0]
	switch {
	case s == "**":
		walkGlob(dir, segs[1:], visit)
		ents, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		for _, e := range ents {
			if e.IsDir() { // not a symlink to a directory: no loops
				walkGlob(filepath.Join(dir, e.Name()), segs, visit)
			}
		}
	case !hasMeta(s):
		walkGlob(filepath.Join(dir, s), segs[1:], visit)
	default:
		f, err := os.Open(dir)
		if err != nil {
			return
		}
		names, _ := f.Readdirnames(-1)
		f.Close()
		for _, n := range names {
			if ok, _ := filepath.Match(s, n); ok {
				walkGlob(filepath.Join(dir, n), segs[1:], visit)
			}
		}
	}
}

// baseDir is the longest leading part of pattern without glob characters:
// the directory watched for new files.
func baseDir(pattern string) string {
	segs := strings.Split(filepath.Clean(pattern), "/")
	i := 0
	for i < len(segs)-1 && !hasMeta(segs[i]) {
		i++
	}
	d := strings.Join(segs[:i], "/")
	if d == "" {
		return "/"
	}
	return d
}

// matchPath reports whether path matches pattern, "**" included.
func matchPath(pattern, path string) bool {
	return matchSegs(strings.Split(filepath.Clean(pattern), "/"), strings.Split(path, "/"))
}

func matchSegs(p, s []string) bool {
	for len(p) > 0 {
		if p[0] == "**" {
			for i := 0; i <= len(s); i++ {
				if matchSegs(p[1:], s[i:]) {
					return true
				}
			}
			return false
		}
		if len(s) == 0 {
			return false
		}
		if ok, _ := filepath.Match(p[0], s[0]); !ok {
			return false
		}
		p, s = p[1:], s[1:]
	}
	return len(s) == 0
}

// excluded reports whether path is excluded by one of the patterns: a
// pattern with a "/" is matched against the full path, else against the
// base name.
func excluded(patterns []string, path string) bool {
	for _, p := range patterns {
		if strings.Contains(p, "/") {
			if matchPath(p, path) {
				return true
			}
		} else if ok, _ := filepath.Match(p, filepath.Base(path)); ok {
			return true
		}
	}
	return false
}
