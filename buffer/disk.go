package buffer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/sidelog/sidelog/event"
)

// Defaults of a disk buffer.
const (
	DefaultDiskMaxBytes   = 256 << 20
	DefaultMemoryMaxBytes = 4 << 20
	defaultSegmentSize    = 16 << 20
	defaultMaxPending     = 8 << 20
	defaultWriteDelay     = 100 * time.Millisecond
	defaultCacheBytes     = 1 << 20
	ledgerSyncEvery       = 100 * time.Millisecond
)

// ErrClosed is returned by Read and Write after Close.
var ErrClosed = errors.New("buffer: closed")

// Option configures Open.
type Option func(*options)

type options struct {
	fs          FS
	logger      *slog.Logger
	segmentSize int64
	cacheBytes  int64
	maxPending  int64
	writeDelay  time.Duration
	hook        func(point string)
	now         func() time.Time
}

// WithFS makes the buffer do all its I/O through fsys (default: OSFS).
func WithFS(fsys FS) Option { return func(o *options) { o.fs = fsys } }

// WithLogger sets the logger for recovery and I/O errors.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithSegmentSize sets the size at which a segment file is closed and a new
// one started (default 16 MiB, at most max_bytes/4).
func WithSegmentSize(n int64) Option { return func(o *options) { o.segmentSize = n } }

// WithMemoryCache sets how many bytes of written records are kept in memory
// so that a reader that keeps up does not read them back from disk
// (default 1 MiB).
func WithMemoryCache(n int64) Option { return func(o *options) { o.cacheBytes = n } }

// WithWriteDelay sets how long the flusher holds records back before it
// writes them (default 100 ms): records delivered and acknowledged meanwhile
// are never written. Zero writes at once.
func WithWriteDelay(dl time.Duration) Option { return func(o *options) { o.writeDelay = dl } }

// WithHook calls f at points of the write path ("write", "fsync", "roll",
// "ledger", "remove"): tests use it to crash at chosen moments.
func WithHook(f func(point string)) Option { return func(o *options) { o.hook = f } }

type segment struct {
	id       uint64
	firstSeq uint64 // no record below it is in the segment
	written  int64  // bytes in the file (this run) or file size (old)
	old      bool   // from a previous run: read-only, may hold damage
}

// pendRec is a record waiting for the flusher (or a new segment's header,
// which creates the file). Its place in the files is fixed when it is
// appended; the frame is built when it is written, and a record delivered
// and acknowledged before that is never written (see trim).
type pendRec struct {
	data  []byte         // the payload (or the segment header)
	arena *Arena         // data's memory: a reference held until written or skipped
	ack   event.Releaser // the input's: released once written and fsynced, or skipped
	seq   uint64
	ms    int64
	seg   uint64
	off   int64 // file offset of the frame (or header)
	z     bool  // data is zstd-compressed
	hdr   bool  // data is the header of a new segment
}

// size is the bytes r takes in its segment.
func (r *pendRec) size() int64 {
	if r.hdr {
		return segHeaderSize
	}
	return int64(frameHeader + len(r.data))
}

type cached struct {
	data  []byte
	arena *Arena // data's memory: released when the record leaves the cache
	seq   uint64
	seg   uint64
	end   int64 // file offset after the record's frame
	size  int64 // framed size
}

// heldArena is k records of a batch read from the cache, whose Data is in
// arena a: released at Ack.
type heldArena struct {
	a *Arena
	k int
}

type diskBatch struct {
	start, end uint64 // sequence range [start, end) handed out
	bytes      int64  // framed bytes
	records    int64
	done       bool
	seg        uint64 // position after the batch
	off        int64
	arenas     [][]byte    // blocks holding records read from disk
	held       []heldArena // encode arenas of records read from the cache
}

// hold notes a record read from the cache, whose Data is in a.
func (db *diskBatch) hold(a *Arena) {
	if a == nil {
		return
	}
	if n := len(db.held); n > 0 && db.held[n-1].a == a {
		db.held[n-1].k++
		return
	}
	db.held = append(db.held, heldArena{a, 1})
}

type timeMark struct {
	seq uint64
	ms  int64
}

// Disk is a buffer kept in segment files under one directory. See
// docs/buffer.md for the format and the guarantees.
type Disk struct {
	dir      string
	o        options
	maxBytes int64
	dropNew  bool
	zenc     *zstd.Encoder
	zdec     *zstd.Decoder
	log      *slog.Logger

	mu        sync.Mutex
	spaceCond *sync.Cond // writers waiting for room
	dataCond  *sync.Cond // readers waiting for records
	workCond  *sync.Cond // the flusher waiting for work

	// write side
	writeSeq   uint64
	segs       []*segment // live segments, oldest first; the last one is written
	needRoll   bool       // start a new segment at the next write
	activeOff  int64      // logical end of the active segment, pending included
	pend       []pendRec
	spare      []pendRec
	wbuf       []byte   // the flusher's frames, reused
	freeArenas [][]byte // read blocks to reuse
	pendBytes  int64
	pendFrames int           // records (not headers) in pend
	wake       chan struct{} // ends the flusher's hold early
	skipTo     uint64        // records below it may be missing from the files (skipped)
	writtenSeq uint64        // records below it are in a file and fsynced
	bytes      int64         // unacknowledged framed bytes
	records    int64         // unacknowledged records
	unread     int64         // records not handed out
	sealed     bool
	closed     bool
	stalled    bool // the flusher is retrying after an I/O error
	marks      []timeMark
	arr        arrivals // arrival times by sequence, for Limits.Linger

	// counters
	dropped, corrupt, corruptBytes, noSpace, ioErrors int64

	// memory cache of written records [cache[ch].seq, writeSeq)
	cache      []cached
	ch         int
	cacheBytes int64

	// read side
	readMu  sync.Mutex // one Read at a time
	readSeq uint64
	rseg    uint64 // disk position of record readSeq (or before it)
	roff    int64
	rfile   File
	rfileID uint64
	rbuf    []byte

	// ack side
	inflight   []*diskBatch
	ackSeq     uint64
	ledgerMu   sync.Mutex
	ledgerF    File
	ledgerGen  uint64
	ledgerAck  uint64 // ack seq in the ledger file (written, maybe not synced)
	ledgerSync uint64 // ack seq in the ledger file and fsynced
	lastLSync  time.Time

	nextID  uint64
	done    chan struct{} // closed when the flusher returns
	closeCh chan struct{} // closed by Close
}

func (d *Disk) hook(p string) {
	if d.o.hook != nil {
		d.o.hook(p)
	}
}

// Open opens (or creates) the disk buffer in dir, recovering what a previous
// run left: damaged frames are skipped and counted, unacknowledged records
// are delivered again.
func Open(dir string, cfg Config, opts ...Option) (*Disk, error) {
	o := options{fs: OSFS{}, cacheBytes: defaultCacheBytes, maxPending: defaultMaxPending, writeDelay: defaultWriteDelay, now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	maxBytes := int64(cfg.MaxBytes)
	if maxBytes <= 0 {
		maxBytes = DefaultDiskMaxBytes
	}
	if o.segmentSize <= 0 {
		o.segmentSize = min(defaultSegmentSize, max(maxBytes/4, 64<<10))
	}
	o.maxPending = min(o.maxPending, max(maxBytes/2, 64<<10))
	d := &Disk{dir: dir, o: o, maxBytes: maxBytes, dropNew: cfg.WhenFull == "drop_newest",
		log: o.logger.With("buffer", dir), done: make(chan struct{}), closeCh: make(chan struct{}), wake: make(chan struct{}, 1), needRoll: true}
	d.spaceCond = sync.NewCond(&d.mu)
	d.dataCond = sync.NewCond(&d.mu)
	d.workCond = sync.NewCond(&d.mu)
	var err error
	switch cfg.Compression {
	case "", "none":
	case "zstd":
		d.zenc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true),
			zstd.WithEncoderCRC(false), zstd.WithSingleSegment(true)) // frames have their own CRC
		if err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("buffer: unknown compression %q (none | zstd)", cfg.Compression)
	}
	// A decoder is always there: old segments may be compressed.
	if d.zdec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxFrame)); err != nil {
		return nil, err
	}
	if err := d.recover(); err != nil {
		d.zdec.Close()
		return nil, err
	}
	go d.flusher()
	return d, nil
}

func (d *Disk) path(name string) string { return filepath.Join(d.dir, name) }

// wait blocks on c until signalled or ctx is done; it returns ctx.Err().
func (d *Disk) wait(ctx context.Context, c *sync.Cond) error {
	if ctx.Done() == nil {
		c.Wait()
		return nil
	}
	stop := context.AfterFunc(ctx, func() {
		d.mu.Lock()
		c.Broadcast()
		d.mu.Unlock()
	})
	c.Wait()
	stop()
	return ctx.Err()
}

const (
	arenaSize     = 256 << 10
	writeBufSize  = 1 << 20 // the flusher writes at most this much at once
	maxFreeArenas = 4
)

// Seal refuses further writes and lets Read drain.
func (d *Disk) Seal() {
	d.mu.Lock()
	d.sealed = true
	d.poke()
	d.dataCond.Broadcast()
	d.spaceCond.Broadcast()
	d.mu.Unlock()
}

// Stats reports sizes and counters.
func (d *Disk) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := Stats{Records: d.records, Bytes: d.bytes, Dropped: d.dropped, Corrupt: d.corrupt,
		CorruptBytes: d.corruptBytes, NoSpace: d.noSpace, IOErrors: d.ioErrors, Stalled: d.stalled,
		Segments: len(d.segs), InFlight: len(d.inflight)}
	if len(d.marks) > 0 && d.records > 0 {
		s.OldestUnacked = time.UnixMilli(d.marks[0].ms)
	}
	return s
}

// Close flushes what was written (one attempt if the disk fails), writes the
// ledger and closes the files. Unacknowledged records stay for the next Open.
func (d *Disk) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		<-d.done
		return nil
	}
	d.closed = true
	close(d.closeCh)
	d.workCond.Broadcast()
	d.dataCond.Broadcast()
	d.spaceCond.Broadcast()
	d.mu.Unlock()
	<-d.done
	d.readMu.Lock()
	if d.rfile != nil {
		d.rfile.Close()
		d.rfile = nil
	}
	d.readMu.Unlock()
	d.ledgerMu.Lock()
	err := d.ledgerF.Close()
	d.ledgerMu.Unlock()
	d.zdec.Close()
	if d.zenc != nil {
		d.zenc.Close()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.pend) > 0 {
		return fmt.Errorf("buffer: closed with %d bytes not written", d.pendBytes)
	}
	return err
}
