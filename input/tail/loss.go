// Every byte given up is counted: by reason in
// sidelog_input_lost_bytes_total{input,reason}, with a warning naming the
// file.

package tail

import (
	"sync"
	"time"

	"github.com/sidelog/sidelog/parser"
)

// lossKind is why bytes were given up.
type lossKind int

const (
	// lossTruncated: a file truncated (copytruncate, truncate) while the
	// reader was behind: the bytes past the read position before the
	// truncation were never read.
	lossTruncated lossKind = iota
	// lossDeleted: a deleted file released unread after max_deleted_hold,
	// or a rotated file gone (deleted, compressed) while the agent was
	// down, with unread bytes.
	lossDeleted
	// lossReadError: bytes that could not be read (EIO, ESTALE) after the
	// read was retried for max_read_error_hold.
	lossReadError
	// lossLineCut: the part of a line past max_line_bytes.
	lossLineCut
	// lossGroupCut: the part of a multiline group or of joined container
	// partials past max_line_bytes.
	lossGroupCut
	nLoss
)

// LossReasons are the reason labels of the lost bytes, in lossKind order.
var LossReasons = [nLoss]string{"truncated", "deleted", "read_error", "line_cut", "group_cut"}

// lossWarnEvery is the shortest pause between two warnings for one file
// and reason (a file of over-long lines would log each one); the counter
// counts every byte, and the next warning says how many bytes the skipped
// ones covered.
const lossWarnEvery = 10 * time.Second

type warnKey struct {
	path string
	why  lossKind
}

type warnState struct {
	last   time.Time
	bytes  int64 // lost since the last warning
	events int   // losses since the last warning
}

// warner rate-limits warnings per (path, reason).
type warner struct {
	mu sync.Mutex
	m  map[warnKey]*warnState
}

// due records a loss of n bytes and reports whether to warn now, with the
// bytes and losses the warning covers.
func (w *warner) due(k warnKey, n int64, now time.Time) (ok bool, bytes int64, events int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[warnKey]*warnState{}
	}
	s := w.m[k]
	if s == nil {
		if len(w.m) >= 4096 { // forget the quiet ones
			for key, v := range w.m {
				if now.Sub(v.last) >= lossWarnEvery && v.events == 0 {
					delete(w.m, key)
				}
			}
		}
		s = &warnState{}
		w.m[k] = s
	}
	s.bytes += n
	s.events++
	if !s.last.IsZero() && now.Sub(s.last) < lossWarnEvery {
		return false, 0, 0
	}
	bytes, events = s.bytes, s.events
	s.last, s.bytes, s.events = now, 0, 0
	return true, bytes, events
}

var lossMessages = [nLoss]string{
	"tail: a file was truncated while unread bytes remained; they are lost",
	"tail: a deleted file's unread bytes are lost",
	"tail: bytes that could not be read are lost",
	"tail: a line longer than max_line_bytes was cut; the rest is lost",
	"tail: a group (multiline, container partials) longer than max_line_bytes was cut; the rest is lost",
}

// lose counts n bytes of the file at path given up for why, and warns
// (rate-limited per file and reason). attrs are added to the warning.
func (t *Tailer) lose(path string, why lossKind, n int64, attrs ...any) {
	if n <= 0 {
		return
	}
	t.stats.lost[why].Add(uint64(n))
	ok, bytes, events := t.warn.due(warnKey{path, why}, n, time.Now())
	if !ok {
		return
	}
	args := append([]any{"path", path, "reason", LossReasons[why], "lost_bytes", bytes}, attrs...)
	if events > 1 {
		args = append(args, "losses", events)
	}
	t.log.Warn(lossMessages[why], args...)
}

// asmLost counts the bytes f's assembler gave up (group cuts). Call with
// f.mu held, after each call into the assembler.
func (t *Tailer) asmLost(f *file) {
	if l, ok := f.asm.(parser.LossCounter); ok {
		t.lose(f.path, lossGroupCut, l.TakeLost())
	}
}
