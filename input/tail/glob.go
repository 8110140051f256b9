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
func glob(pattern string, visit func(path string)) { globDirs(pattern, visit, nil) }

// globDirs is glob that also calls dirs (when not nil) for every directory
// where a new entry could make a new match and that the pattern's base
// directory (watched on its own) does not cover: each directory whose
// entries are listed for a pattern segment, and below such a listing each
// directory where a literal segment is looked up (it may not exist yet).
func globDirs(pattern string, visit, dirs func(path string)) {
	pattern = filepath.Clean(pattern)
	segs := strings.Split(pattern, "/")
	w := globWalk{visit: visit, dirs: dirs}
	if segs[0] == "" { // absolute
		w.walk("/", segs[1:], false)
		return
	}
	w.walk(".", segs, false)
}

type globWalk struct{ visit, dirs func(string) }

// watch reports a directory about to be listed or looked into: before the
// listing, so that an entry created after it shows as an event.
func (w *globWalk) watch(dir string) {
	if w.dirs != nil {
		w.dirs(dir)
	}
}

// walk matches segs below dir; listed reports that dir was found by listing
// a directory (so it is below the base directory).
func (w *globWalk) walk(dir string, segs []string, listed bool) {
	if len(segs) == 0 {
		w.visit(dir)
		return
	}
	s := segs[0]
	switch {
	case s == "**":
		w.walk(dir, segs[1:], listed)
		w.watch(dir)
		ents, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		for _, e := range ents {
			if e.IsDir() { // not a symlink to a directory: no loops
				w.walk(filepath.Join(dir, e.Name()), segs, true)
			}
		}
	case !hasMeta(s):
		if listed {
			w.watch(dir)
		}
		w.walk(filepath.Join(dir, s), segs[1:], listed)
	case len(segs) == 1: // the file names: no types needed
		w.watch(dir)
		f, err := os.Open(dir)
		if err != nil {
			return
		}
		names, _ := f.Readdirnames(-1)
		f.Close()
		for _, n := range names {
			if ok, _ := filepath.Match(s, n); ok {
				w.visit(filepath.Join(dir, n))
			}
		}
	default:
		w.watch(dir)
		ents, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		for _, e := range ents {
			// only a directory (or a link to one) has entries to match
			// the remaining segments against
			if !e.IsDir() && e.Type()&os.ModeSymlink == 0 {
				continue
			}
			if ok, _ := filepath.Match(s, e.Name()); ok {
				w.walk(filepath.Join(dir, e.Name()), segs[1:], true)
			}
		}
	}
}

// matches reports whether path is matched by one of patterns and not
// excluded.
func matches(patterns, exclude []string, path string) bool {
	if excluded(exclude, path) {
		return false
	}
	for _, p := range patterns {
		if matchPath(p, path) {
			return true
		}
	}
	return false
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
