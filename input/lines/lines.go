// Package lines says what a line of a log file is, for the tail input and
// for everything that must see the same records without a tail: `sidelog
// test` (pipeline.Process) and the parsers' golden tests. A line ends at
// '\n'; a trailing '\r' is not part of it; an empty line is no record; a
// line longer than max_line_bytes is cut there and flagged.
package lines

import "unicode/utf8"

// Trim returns the line as the tail emits it (without a trailing '\r') and
// false when it is blank, which the tail skips.
func Trim(line []byte) ([]byte, bool) {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[: n-1 : n-1]
	}
	return line, len(line) > 0
}

// Cut returns line cut to at most max bytes without splitting a UTF-8
// character: the cut backs off (by at most 3 bytes) to the start of a
// character that would not fit whole. Bytes that are not valid UTF-8 are
// cut as they come.
func Cut(line []byte, max int) []byte {
	if len(line) <= max {
		return line
	}
	n := max
	// Back off over continuation bytes (10xxxxxx) to the first byte of
	// the character that straddles the limit, if it is a valid start.
	for i := 0; i < utf8.UTFMax-1 && n > 0 && line[n]&0xC0 == 0x80; i++ {
		n--
	}
	if n < max && !utf8.FullRune(line[n:max]) && utf8.RuneStart(line[n]) && line[n] >= 0xC0 {
		return line[:n:n]
	}
	return line[:max:max]
}

// Split cuts the content of a whole file into the records the tail emits
// for it, in order: fn gets each kept line (cut to maxLine bytes, with
// truncated set, when longer; maxLine <= 0: no limit) and the offset just
// past its newline (or past the line, for a last line without one). Blank
// lines are skipped.
func Split(data []byte, maxLine int, fn func(line []byte, end int64, truncated bool)) {
	var off int64
	for len(data) > 0 {
		line := data
		n := -1
		for i, b := range data {
			if b == '\n' {
				n = i
				break
			}
		}
		if n >= 0 {
			line, data = data[:n:n], data[n+1:]
			off += int64(n + 1)
		} else {
			data = nil
			off += int64(len(line))
		}
		line, ok := Trim(line)
		if !ok {
			continue
		}
		truncated := false
		if maxLine > 0 && len(line) > maxLine {
			line, truncated = Cut(line, maxLine), true
		}
		fn(line, off, truncated)
	}
}
