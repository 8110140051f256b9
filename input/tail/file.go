package tail

import (
	"hash/maphash"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
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
	// ckptEnc is the JSON of this file's checkpoint entry that changes
	// rarely (persist only, under the tailer's ckptMu).
	ckptEnc *entryEnc

	mu sync.Mutex
	fd *os.File
	// sysfd is fd's descriptor, for single pread calls (see pread); valid
	// while fd is not nil, used with mu held like fd.
	sysfd int
	path  string // the matched path (the link, for a symbolic link)
	// target is the resolved path when path is a symbolic link.
	target string

	id    event.FileID // Fingerprint valid once idSet
	idSet bool
	mFP   uint64 // hash of the first mLen bytes, for identity matching
	mLen  int
	// vh is a fast hash (maphash, this process only) of the same first
	// mLen bytes, valid when vhLen == mLen: the reader compares the first
	// bytes before each turn, and FNV-1a over 1 KiB a byte at a time cost
	// more than the read itself for a one-line append.
	vh    uint64
	vhLen int

	tr        *tracker // current generation
	offset    int64    // bytes consumed (read position), partial included
	lineStart int64    // where the line in progress (partial or skipped) starts
	partial   []byte   // held bytes of an unterminated line (a copy)
	// win holds the last winN (up to winBytes) bytes consumed, just before
	// offset: each read reads them again and compares (truncation).
	win      [winBytes]byte
	winN     int
	skipping bool // inside a line already cut at max_line_bytes
	asm      parser.Assembler

	size int64 // last size seen by stat
	// genMax is the largest size seen in this generation before any
	// truncation showed: a truncation loses the bytes from the read
	// position up to it.
	genMax    int64
	readErrAt time.Time // a read failed (EIO, ESTALE) and is retried since
	mtime     time.Time // last modification time seen by stat
	seen      time.Time // last time a path matched it
	seenScan  uint64    // scan number when a path matched it
	pathScan  uint64    // scan number when f.path itself matched it
	altPath   string    // another matching path seen in this scan
	rotatedAt time.Time // no path matches it any more (renamed away)
	// eofAt: the reader reached the end of a file renamed away (rotatedAt
	// set); rotate_wait counts from it, cleared when a read finds more.
	eofAt    time.Time
	lastData time.Time // the last read that found bytes
	opened   time.Time // when this descriptor was opened
	// inactive: closed by sidelog while a path still matched it (idle for
	// close_inactive, or to make room under max_open_files, or skipped by
	// ignore_older): reopened by identity when a scan finds it changed.
	inactive  bool
	deletedAt time.Time // its link count dropped to zero
	truncated bool      // truncation seen: the reader starts a new generation

	queued atomic.Bool // in the reader's queue (no lock)
	// wev counts fsnotify write events for the file (no lock); wevSeen is
	// its value at the last scan (scanner only). A file that grew with no
	// event between two scans shows that fsnotify misses changes.
	wev     atomic.Uint32
	wevSeen uint32
	// offsetA and sizeA mirror offset and size for lock-free reads (Stats).
	offsetA atomic.Int64
	sizeA   atomic.Int64
}

// FNV-1a, inline so the fingerprint allocates nothing and is stable across
// versions and hosts.
func fingerprint(b []byte) uint64 { return fnvExtend(fnvBasis, b) }

const fnvBasis = 14695981039346656037

// fnvExtend continues FNV-1a hash h (of some bytes a) over b: the result is
// fingerprint(a followed by b).
func fnvExtend(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// setFD sets the open descriptor of f. Call with mu held.
func (f *file) setFD(fd *os.File) error {
	rc, err := fd.SyscallConn()
	if err != nil {
		return err
	}
	err = rc.Control(func(d uintptr) { f.sysfd = int(d) })
	if err == nil {
		f.fd = fd
	}
	return err
}

// pread reads into b at off with one system call: os.File.ReadAt goes on
// until b is full, so every short read at the end of a file (the usual
// case for a file being appended) would cost a second call that returns
// nothing. n < len(b) means the end of the file. Call with mu held and fd
// open.
func (f *file) pread(b []byte, off int64) (int, error) {
	if readFault != nil {
		if err := readFault(f.path, off); err != nil {
			return 0, &os.PathError{Op: "pread", Path: f.path, Err: err}
		}
	}
	for {
		n, err := syscall.Pread(f.sysfd, b, off)
		if err == syscall.EINTR {
			continue
		}
		if n < 0 {
			n = 0
		}
		if err != nil {
			return n, &os.PathError{Op: "pread", Path: f.path, Err: err}
		}
		return n, nil
	}
}

// readFault, when set (tests, before a tailer runs), makes the reads of a
// file fail with the error it returns.
var readFault func(path string, off int64) error

// extendPrefix learns the first bytes of a short file from data, the bytes
// just read, which start at file offset base: when they continue the
// matched prefix (base <= mLen), the fingerprint is extended without
// reading the first bytes again. It reports false when data does not reach
// past the prefix from there (the caller then reads the head). Call with mu
// held.
func (f *file) extendPrefix(data []byte, base int64, limit int) bool {
	if base > int64(f.mLen) || !f.idSet {
		return false
	}
	end := base + int64(len(data)) // file offset just past data
	if end > int64(limit) {
		end = int64(limit)
	}
	if end <= int64(f.mLen) {
		return true // nothing new within the first limit bytes
	}
	h := f.mFP
	if f.mLen == 0 {
		h = fnvBasis
	}
	f.mFP = fnvExtend(h, data[int64(f.mLen)-base:end-base])
	f.mLen = int(end)
	f.vhLen = 0 // the fast hash is computed again from the bytes when verified
	return true
}

var headSeed = maphash.MakeSeed()

// checkPrefix compares the first bytes of the file (head, up to
// fingerprint_bytes) with what is known. A mismatch means the file was
// truncated and rewritten (same inode). On a match the matching prefix grows
// while the file is short, and the frozen identity fingerprint is set the
// first time the file has content. Call with mu held.
func (f *file) checkPrefix(head []byte) (same bool) {
	if f.mLen > 0 {
		if len(head) < f.mLen {
			return false
		}
		if f.vhLen == f.mLen {
			// equal bytes hash equally: a different hash is a mismatch; an
			// equal one is a match but for a 2^-64 collision, as with FNV
			if maphash.Bytes(headSeed, head[:f.mLen]) != f.vh {
				return false
			}
		} else {
			if fingerprint(head[:f.mLen]) != f.mFP {
				return false
			}
			f.vh, f.vhLen = maphash.Bytes(headSeed, head[:f.mLen]), f.mLen
		}
	}
	if len(head) > f.mLen {
		f.mFP, f.mLen = fingerprint(head), len(head)
		f.vh, f.vhLen = maphash.Bytes(headSeed, head), len(head)
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
	m, _ := f.pread(buf[:n], 0)
	return buf[:m]
}
