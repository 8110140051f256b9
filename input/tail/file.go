package tail

import (
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/parser"
)

// key is a file's device and inode: the part of its identity that the file
// system gives. While sidelog holds a file open its inode cannot be reused,
// so an open file is found by key alone; a closed one (known from the
// checkpoint) also needs its fingerprint to match.
type key struct{ dev, ino uint64 }

// file is one file identity: open (fd != nil) or closed and remembered for
// its checkpoint. Fields are guarded by mu unless noted; the reader holds
// mu while it reads and splits one chunk, never while it emits.
type file struct {
	key key

	mu   sync.Mutex
	fd   *os.File
	path string // the matched path (the link, for a symbolic link)
	// target is the resolved path when path is a symbolic link.
	target string

	id    event.FileID // Fingerprint valid once idSet
	idSet bool
	mFP   uint64 // hash of the first mLen bytes, for identity matching
	mLen  int

	tr        *tracker // current generation
	offset    int64    // bytes consumed (read position), partial included
	lineStart int64    // where the line in progress (partial or skipped) starts
	partial   []byte   // held bytes of an unterminated line (a copy)
	skipping  bool     // inside a line already cut at max_line_bytes
	asm       parser.Assembler

	size      int64     // last size seen by stat
	mtime     time.Time // last modification time seen by stat
	seen      time.Time // last time a path matched it
	seenScan  uint64    // scan number when a path matched it
	pathScan  uint64    // scan number when f.path itself matched it
	altPath   string    // another matching path seen in this scan
	rotatedAt time.Time // no path matches it any more (renamed away)
	deletedAt time.Time // its link count dropped to zero
	truncated bool      // truncation seen: the reader starts a new generation

	queued atomic.Bool // in the reader's queue (no lock)
	// offsetA and sizeA mirror offset and size for lock-free reads (Stats).
	offsetA atomic.Int64
	sizeA   atomic.Int64
}

// FNV-1a, inline so the fingerprint allocates nothing and is stable across
// versions and hosts.
func fingerprint(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// checkPrefix compares the first bytes of the file (head, up to
// fingerprint_bytes) with what is known. A mismatch means the file was
// truncated and rewritten (same inode). On a match the matching prefix grows
// while the file is short, and the frozen identity fingerprint is set the
// first time the file has content. Call with mu held.
func (f *file) checkPrefix(head []byte) (same bool) {
	if f.mLen > 0 {
		if len(head) < f.mLen || fingerprint(head[:f.mLen]) != f.mFP {
			return false
		}
	}
	if len(head) > f.mLen {
		f.mFP, f.mLen = fingerprint(head), len(head)
	}
	if !f.idSet && len(head) > 0 {
		f.id.Fingerprint = fingerprint(head)
		f.idSet = true
	}
	return true
}

// readHead reads the first n bytes of the open file.
func (f *file) readHead(buf []byte, size int64) []byte {
	n := int64(len(buf))
	if size < n {
		n = size
	}
	if n <= 0 {
		return buf[:0]
	}
	m, _ := f.fd.ReadAt(buf[:n], 0)
	return buf[:m]
}
