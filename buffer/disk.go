package buffer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/sidelog/sidelog/event"
)

// Defaults of a disk buffer.
const (
	DefaultDiskMaxBytes   = 256 << 20
	DefaultMemoryMaxBytes = 4 << 20
	defaultSegmentSize    = 16 << 20
	defaultMaxPending     = 1 << 20
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

// WithHook calls f at points of the write path ("write", "fsync", "roll",
// "ledger", "remove"): tests use it to crash at chosen moments.
func WithHook(f func(point string)) Option { return func(o *options) { o.hook = f } }

type segment struct {
	id       uint64
	firstSeq uint64 // no record below it is in the segment
	written  int64  // bytes in the file (this run) or file size (old)
	old      bool   // from a previous run: read-only, may hold damage
}

type chunk struct {
	seg    uint64
	off    int64 // file offset of data[0]
	create bool  // data starts with the segment header
	data   []byte
	endSeq uint64 // sequence number after the chunk's last record
}

type cached struct {
	data []byte
	seq  uint64
	seg  uint64
	end  int64 // file offset after the record's frame
	size int64 // framed size
}

type diskBatch struct {
	start, end uint64 // sequence range [start, end) handed out
	bytes      int64  // framed bytes
	records    int64
	done       bool
	seg        uint64 // position after the batch
	off        int64
	arenas     [][]byte // blocks holding records read from disk
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
	pend       []chunk
	spare      []chunk
	freeBufs   [][]byte // chunk buffers to reuse
	freeArenas [][]byte // read blocks to reuse
	pendBytes  int64
	pendAcks   []event.Releaser
	spareAcks  []event.Releaser
	writtenSeq uint64 // records below it are in a file and fsynced
	bytes      int64  // unacknowledged framed bytes
	records    int64  // unacknowledged records
	unread     int64  // records not handed out
	sealed     bool
	closed     bool
	stalled    bool // the flusher is retrying after an I/O error
	marks      []timeMark

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
	o := options{fs: OSFS{}, cacheBytes: defaultCacheBytes, maxPending: defaultMaxPending, now: time.Now}
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
		log: o.logger.With("buffer", dir), done: make(chan struct{}), closeCh: make(chan struct{}), needRoll: true}
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

// recover scans the directory and sets the state from it.
func (d *Disk) recover() error {
	fsys := d.o.fs
	if err := fsys.MkdirAll(d.dir, 0o700); err != nil {
		return fmt.Errorf("buffer: %w", err)
	}
	r, segs, err := scan(fsys, d.dir)
	if err != nil {
		return fmt.Errorf("buffer: recovery: %w", err)
	}
	if r.LedgerErr != "" && r.LedgerErr != "missing" {
		d.log.Error("buffer ledger damaged: delivering every record on disk again", "ledger", d.path(ledgerName), "error", r.LedgerErr)
	}
	d.ackSeq = r.AckSeq
	d.ledgerAck, d.ledgerSync = r.AckSeq, r.AckSeq
	var maxSeq uint64
	var haveSeq bool
	var maxID uint64
	for _, s := range segs {
		maxID = max(maxID, s.id)
		if s.Frames > 0 {
			maxSeq, haveSeq = max(maxSeq, s.LastSeq), true
		}
		for _, br := range s.Bad {
			d.corrupt += br.Unacked
			d.corruptBytes += br.Length
			d.log.Warn("buffer: skipping damaged frames", "segment", br.Segment, "offset", br.Offset, "bytes", br.Length, "records", br.Records, "unacknowledged", br.Unacked)
		}
		if s.HeaderErr != "" {
			d.log.Warn("buffer: damaged segment header", "segment", s.Name, "error", s.HeaderErr)
		}
	}
	d.writeSeq = d.ackSeq
	if haveSeq {
		d.writeSeq = max(d.writeSeq, maxSeq+1)
	}
	d.writtenSeq = d.writeSeq
	d.readSeq = d.ackSeq
	// Keep segments holding unacknowledged records; remove the others.
	for i, s := range segs {
		if s.Unacked == 0 {
			if err := fsys.Remove(d.path(s.Name)); err != nil {
				d.log.Warn("buffer: cannot remove acknowledged segment", "segment", s.Name, "error", err)
			}
			continue
		}
		// A torn tail of the newest segment would be reported at every
		// start: cut it off (records in it were never acknowledged).
		if i == len(segs)-1 && s.tail {
			if f, err := fsys.OpenFile(d.path(s.Name), os.O_RDWR, 0); err == nil {
				if f.Truncate(s.goodEnd) == nil && f.Sync() == nil {
					s.Size = s.goodEnd
				}
				f.Close()
			}
		}
		first := s.FirstSeq
		d.segs = append(d.segs, &segment{id: s.id, firstSeq: first, written: s.Size, old: true})
	}
	_ = fsys.SyncDir(d.dir)
	d.records, d.bytes, d.unread = r.Records, r.UnackedBytes, r.Records
	if !r.OldestUnacked.IsZero() {
		d.marks = append(d.marks, timeMark{seq: d.ackSeq, ms: r.OldestUnacked.UnixMilli()})
	}
	d.nextID = maxID + 1
	if len(d.segs) > 0 {
		d.rseg, d.roff = d.segs[0].id, segHeaderSize
	}
	// The ledger.
	f, err := fsys.OpenFile(d.path(ledgerName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("buffer: ledger: %w", err)
	}
	d.ledgerF = f
	d.ledgerGen = 0
	if lb, err := readAll(fsys, d.path(ledgerName)); err == nil {
		if l, n := pickLedger(lb); n > 0 {
			d.ledgerGen = l.gen
		}
	}
	if r.LedgerSlots == 0 {
		if err := d.writeLedger(true); err != nil {
			return fmt.Errorf("buffer: ledger: %w", err)
		}
		_ = fsys.SyncDir(d.dir)
	}
	return nil
}

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

type scratch struct {
	comp []byte
	ends []int
}

var compScratch = sync.Pool{New: func() any { return new(scratch) }}

// Write appends records. Their acks are released after the fsync that makes
// them durable. When the buffer is full it blocks (when_full: block) or drops
// the records that do not fit and releases their acks (drop_newest); a full
// or failing disk blocks writers until the flusher gets through.
func (d *Disk) Write(ctx context.Context, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	var comp []byte
	var ends []int
	if d.zenc != nil {
		sc := compScratch.Get().(*scratch)
		defer compScratch.Put(sc)
		comp, ends = sc.comp[:0], sc.ends[:0]
		for _, r := range recs {
			comp = d.zenc.EncodeAll(r.Data, comp)
			ends = append(ends, len(comp))
		}
		sc.comp, sc.ends = comp, ends
	}
	var drops []event.Releaser
	defer func() {
		for _, a := range drops {
			a.Release()
		}
	}()
	now := d.o.now().UnixMilli()
	d.mu.Lock()
	defer d.mu.Unlock()
	start := 0
	for i, r := range recs {
		payload, z := r.Data, false
		if d.zenc != nil {
			// Keep the compressed form only when it is smaller (short
			// records often are not).
			if c := comp[start:ends[i]]; len(c) < len(r.Data) {
				payload, z = c, true
			}
			start = ends[i]
		}
		fsz := int64(frameHeader + len(payload))
		for {
			if d.closed {
				return ErrClosed
			}
			if d.sealed {
				return ErrSealed
			}
			if d.pendBytes >= d.o.maxPending {
				if err := d.waitRoom(ctx); err != nil {
					return err
				}
				continue
			}
			if d.bytes > 0 && d.bytes+fsz > d.maxBytes {
				if d.dropNew {
					break
				}
				if err := d.waitRoom(ctx); err != nil {
					return err
				}
				continue
			}
			break
		}
		if d.bytes > 0 && d.bytes+fsz > d.maxBytes {
			d.dropped++
			drops = append(drops, r.Ack)
			continue
		}
		d.append(r, payload, fsz, now, z)
	}
	d.workCond.Signal()
	d.dataCond.Broadcast()
	return nil
}

// waitRoom waits for room for a writer; d.mu is held. The records of the
// call appended so far are handed to the flusher and the reader first:
// otherwise a call holding more than the pending bound (or max_bytes) would
// wait for room that only they can make.
func (d *Disk) waitRoom(ctx context.Context) error {
	d.workCond.Signal()
	d.dataCond.Broadcast()
	return d.wait(ctx, d.spaceCond)
}

// append frames one record into the pending chunks; d.mu is held.
func (d *Disk) append(r Record, payload []byte, fsz int64, now int64, z bool) {
	seq := d.writeSeq
	d.writeSeq++
	if d.needRoll || (d.activeOff+fsz > d.o.segmentSize && d.activeOff > segHeaderSize) {
		d.needRoll = false
		id := d.nextID
		d.nextID++
		d.segs = append(d.segs, &segment{id: id, firstSeq: seq})
		c := d.newChunk(id, 0)
		c.create = true
		c.data = appendSegHeader(c.data, segHeader{id: id, firstSeq: seq, created: now})
		d.pend = append(d.pend, c)
		d.activeOff = segHeaderSize
		d.pendBytes += segHeaderSize
	}
	// Chunks are fixed buffers: a full one is followed by another rather
	// than grown (no copying of what is already framed).
	if n := len(d.pend); n == 0 || d.pend[n-1].seg != d.segs[len(d.segs)-1].id || len(d.pend[n-1].data)+int(fsz) > cap(d.pend[n-1].data) {
		c := d.newChunk(d.segs[len(d.segs)-1].id, d.activeOff)
		if cap(c.data) < int(fsz) {
			c.data = make([]byte, 0, fsz)
		}
		d.pend = append(d.pend, c)
	}
	c := &d.pend[len(d.pend)-1]
	c.data = appendFrame(c.data, seq, now, payload, z)
	c.endSeq = seq + 1
	d.activeOff += fsz
	d.pendBytes += fsz
	d.pendAcks = append(d.pendAcks, r.Ack)
	d.bytes += fsz
	d.records++
	d.unread++
	if n := len(d.marks); n == 0 || now-d.marks[n-1].ms >= 100 {
		d.marks = append(d.marks, timeMark{seq: seq, ms: now})
	}
	d.cache = append(d.cache, cached{data: r.Data, seq: seq, seg: c.seg, end: d.activeOff, size: fsz})
	d.cacheBytes += int64(len(r.Data))
	d.evict()
}

const (
	arenaSize     = 256 << 10
	chunkSize     = 256 << 10 // pending write buffers
	maxFreeArenas = 4
)

// getArena returns a block for records read from disk; d.readMu is held.
func (d *Disk) getArena() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := len(d.freeArenas); n > 0 {
		a := d.freeArenas[n-1][:0]
		d.freeArenas[n-1] = nil
		d.freeArenas = d.freeArenas[:n-1]
		return a
	}
	return make([]byte, 0, arenaSize)
}

func (d *Disk) newChunk(seg uint64, off int64) chunk {
	c := chunk{seg: seg, off: off}
	if n := len(d.freeBufs); n > 0 {
		c.data = d.freeBufs[n-1][:0]
		d.freeBufs[n-1] = nil
		d.freeBufs = d.freeBufs[:n-1]
	} else {
		c.data = make([]byte, 0, chunkSize)
	}
	return c
}

// evict drops the oldest cached records beyond the cache's size, as long as
// they are on disk; the reader reads those from the files.
func (d *Disk) evict() {
	for d.ch < len(d.cache) && d.cacheBytes > d.o.cacheBytes && d.cache[d.ch].seq < d.writtenSeq {
		d.cacheBytes -= int64(len(d.cache[d.ch].data))
		d.cache[d.ch] = cached{}
		d.ch++
	}
	if d.ch == len(d.cache) {
		d.cache, d.ch = d.cache[:0], 0
	} else if d.ch > 1024 && d.ch > len(d.cache)/2 {
		n := copy(d.cache, d.cache[d.ch:])
		clear(d.cache[n:])
		d.cache, d.ch = d.cache[:n], 0
	}
}

// cacheStart is the first sequence number held by the cache; d.mu is held.
func (d *Disk) cacheStart() uint64 {
	if d.ch < len(d.cache) {
		return d.cache[d.ch].seq
	}
	return d.writeSeq
}

func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// flusher writes pending chunks, fsyncs them, releases their acks, and
// removes fully acknowledged segments.
func (d *Disk) flusher() {
	defer close(d.done)
	var wf File
	var wfID uint64
	closeW := func() {
		if wf != nil {
			wf.Close()
			wf = nil
		}
	}
	defer closeW()
	backoff := 10 * time.Millisecond
	for {
		d.mu.Lock()
		for len(d.pend) == 0 && !d.closed && !d.wantRemove() {
			d.workCond.Wait()
		}
		closing := d.closed
		chunks := d.pend
		acks := d.pendAcks
		upTo := d.writeSeq
		d.pend, d.pendAcks = d.spare[:0], d.spareAcks[:0]
		d.spare, d.spareAcks = nil, nil
		d.mu.Unlock()

		var err error
		for len(chunks) > 0 {
			d.mu.Lock()
			var skipped []uint64
			chunks, skipped = d.skipAcked(chunks)
			d.mu.Unlock()
			if len(skipped) > 0 {
				d.removeSkipped(skipped, &wf, &wfID)
			}
			err = d.writeChunks(chunks, &wf, &wfID)
			if err == nil {
				break
			}
			d.mu.Lock()
			d.ioErrors++
			if isNoSpace(err) {
				d.noSpace++
			}
			d.stalled = true
			d.mu.Unlock()
			d.log.Error("buffer: write failed, writers paused until it succeeds", "error", err, "retry_in", backoff.String(), "no_space", isNoSpace(err))
			closeW()
			if closing {
				break
			}
			// Acknowledged segments may be what fills the disk.
			_ = d.maintain(false)
			if !d.sleep(backoff) {
				closing = true
			}
			backoff = min(backoff*2, 5*time.Second)
		}
		if err != nil {
			// Closing with a failing disk: what is pending is lost, but its
			// acks were never released, so the inputs read it again.
			return
		}
		backoff = 10 * time.Millisecond
		d.mu.Lock()
		d.stalled = false
		if len(chunks) > 0 {
			d.writtenSeq = upTo
			for _, c := range chunks {
				d.pendBytes -= int64(len(c.data))
				for _, s := range d.segs {
					if s.id == c.seg {
						s.written = c.off + int64(len(c.data))
					}
				}
			}
			for _, c := range chunks {
				if cap(c.data) == chunkSize && int64(len(d.freeBufs)*chunkSize) < d.o.maxPending+chunkSize {
					d.freeBufs = append(d.freeBufs, c.data[:0])
				}
			}
			clear(chunks)
			d.spare = chunks[:0]
			d.evict()
			d.spaceCond.Broadcast()
			d.dataCond.Broadcast()
		}
		d.mu.Unlock()
		for i, a := range acks {
			a.Release()
			acks[i] = event.Releaser{}
		}
		d.mu.Lock()
		d.spareAcks = acks[:0]
		d.mu.Unlock()

		if err := d.maintain(closing); err != nil && !closing {
			d.sleep(backoff)
			backoff = min(backoff*2, 5*time.Second)
		}
		if closing {
			d.mu.Lock()
			more := len(d.pend) > 0
			d.mu.Unlock()
			if !more {
				return
			}
		}
	}
}

// skipAcked drops the chunks of segments never written whose records are
// all acknowledged already (read from memory and delivered while the disk
// was slow or full): writing them would only delay what is not delivered.
// d.mu is held.
func (d *Disk) skipAcked(chunks []chunk) (out []chunk, skipped []uint64) {
	if len(chunks) < 2 || d.ackSeq == 0 {
		return chunks, nil
	}
	out = chunks[:0]
	for i := 0; i < len(chunks); {
		j := i + 1
		for j < len(chunks) && chunks[j].seg == chunks[i].seg {
			j++
		}
		// A segment followed by another in this list is complete: no later
		// chunk will need its file.
		if chunks[i].create && j < len(chunks) && chunks[j-1].endSeq <= d.ackSeq {
			for k := i; k < j; k++ {
				d.pendBytes -= int64(len(chunks[k].data))
			}
			for k, s := range d.segs {
				if s.id == chunks[i].seg {
					d.segs = append(d.segs[:k], d.segs[k+1:]...)
					break
				}
			}
			skipped = append(skipped, chunks[i].seg)
		} else {
			out = append(out, chunks[i:j]...)
		}
		i = j
	}
	if len(skipped) > 0 {
		clear(chunks[len(out):])
		d.spaceCond.Broadcast()
	}
	return out, skipped
}

// removeSkipped removes the files that a failed attempt may have created for
// skipped segments, once the ledger that covers them is durable.
func (d *Disk) removeSkipped(ids []uint64, wf *File, wfID *uint64) {
	if err := d.writeLedger(true); err != nil {
		return // the files stay; recovery removes acknowledged segments
	}
	for _, id := range ids {
		if *wf != nil && *wfID == id {
			(*wf).Close()
			*wf = nil
		}
		if err := d.o.fs.Remove(d.path(segName(id))); err != nil && !errors.Is(err, os.ErrNotExist) {
			d.log.Warn("buffer: cannot remove acknowledged segment", "segment", segName(id), "error", err)
		}
	}
}

// sleep waits dur or until Close; it reports false on Close.
func (d *Disk) sleep(dur time.Duration) bool {
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-d.closeCh:
		return false
	}
}

// writeChunks writes chunks in order, fsyncing each segment it touched; a new
// segment's directory entry is fsynced too. Writes are at fixed offsets, so a
// retry after a failure writes the same bytes again.
func (d *Disk) writeChunks(chunks []chunk, wf *File, wfID *uint64) error {
	if len(chunks) == 0 {
		return nil
	}
	fsys := d.o.fs
	syncDir := false
	for _, c := range chunks {
		if *wf == nil || *wfID != c.seg {
			if *wf != nil {
				d.hook("fsync")
				if err := (*wf).Sync(); err != nil {
					return err
				}
				(*wf).Close()
				*wf = nil
			}
			flag := os.O_RDWR
			if c.create {
				flag |= os.O_CREATE
				d.hook("roll")
			}
			f, err := fsys.OpenFile(d.path(segName(c.seg)), flag, 0o600)
			if err != nil {
				return err
			}
			*wf, *wfID = f, c.seg
			syncDir = syncDir || c.create
		}
		d.hook("write")
		if _, err := (*wf).WriteAt(c.data, c.off); err != nil {
			return err
		}
	}
	d.hook("fsync")
	if err := (*wf).Sync(); err != nil {
		return err
	}
	if syncDir {
		if err := fsys.SyncDir(d.dir); err != nil {
			return err
		}
	}
	return nil
}

// wantRemove reports whether the oldest segment is fully acknowledged and
// written; d.mu is held.
func (d *Disk) wantRemove() bool {
	return len(d.segs) > 1 && d.segs[1].firstSeq <= min(d.ackSeq, d.writtenSeq)
}

// maintain fsyncs the ledger when acks moved, then removes segments whose
// records are all acknowledged (in that order: a removed segment's records
// are below the durable ack position).
func (d *Disk) maintain(force bool) error {
	d.mu.Lock()
	want := d.wantRemove()
	d.mu.Unlock()
	d.ledgerMu.Lock()
	due := d.ledgerAck != d.ledgerSync && (force || time.Since(d.lastLSync) >= ledgerSyncEvery)
	d.ledgerMu.Unlock()
	if !due && !want && !force {
		return nil
	}
	if err := d.writeLedger(true); err != nil {
		d.log.Error("buffer: ledger write failed", "error", err)
		return err
	}
	d.ledgerMu.Lock()
	durable := d.ledgerSync
	d.ledgerMu.Unlock()
	for {
		d.mu.Lock()
		if !d.wantRemove() || d.segs[1].firstSeq > durable {
			d.mu.Unlock()
			return nil
		}
		s := d.segs[0]
		d.segs = d.segs[1:]
		d.mu.Unlock()
		d.hook("remove")
		if err := d.o.fs.Remove(d.path(segName(s.id))); err != nil && !errors.Is(err, os.ErrNotExist) {
			d.log.Warn("buffer: cannot remove acknowledged segment", "segment", segName(s.id), "error", err)
		}
	}
}

// writeLedger writes the current ack position into the next ledger slot
// (without fsync unless sync). The write survives a crash of the process;
// a power cut may lose it, which only delivers records again.
func (d *Disk) writeLedger(sync bool) error {
	d.mu.Lock()
	// The ack position may be ahead of what is durable (records read from
	// memory before their fsync): after a power cut, recovery starts the
	// sequence above it, and those records were delivered.
	ack := d.ackSeq
	l := ledgerState{ackSeq: ack, writeSeq: d.writeSeq}
	if len(d.marks) > 0 {
		l.ackMs = d.marks[0].ms
	}
	d.mu.Unlock()
	d.ledgerMu.Lock()
	defer d.ledgerMu.Unlock()
	if ack != d.ledgerAck || d.ledgerGen == 0 {
		d.ledgerGen++
		l.gen = d.ledgerGen
		var buf [ledgerSlot]byte
		d.hook("ledger")
		if _, err := d.ledgerF.WriteAt(encodeLedger(buf[:0], l), int64(l.gen%2)*ledgerSlot); err != nil {
			return err
		}
		d.ledgerAck = ack
	}
	if sync && d.ledgerSync != d.ledgerAck {
		if err := d.ledgerF.Sync(); err != nil {
			return err
		}
		d.lastLSync = time.Now()
		d.ledgerSync = d.ledgerAck
	} else if sync && d.ledgerGen == 1 {
		if err := d.ledgerF.Sync(); err != nil {
			return err
		}
	}
	return nil
}

// Read returns the next records not yet handed out: from memory while the
// reader keeps up with the writer, else from the segment files.
func (d *Disk) Read(ctx context.Context, l Limits) (*Batch, error) {
	d.readMu.Lock()
	defer d.readMu.Unlock()
	d.mu.Lock()
	for d.readSeq >= d.writeSeq {
		if d.closed {
			d.mu.Unlock()
			return nil, ErrClosed
		}
		if d.sealed {
			d.mu.Unlock()
			return nil, ErrDrained
		}
		if err := d.wait(ctx, d.dataCond); err != nil {
			d.mu.Unlock()
			return nil, err
		}
	}
	if l.Timeout > 0 && !d.sealed && !d.enough(l) {
		tctx, cancel := context.WithTimeout(ctx, l.Timeout)
		for !d.enough(l) && !d.sealed && !d.closed && tctx.Err() == nil {
			_ = d.wait(tctx, d.dataCond)
		}
		cancel()
		if err := ctx.Err(); err != nil {
			d.mu.Unlock()
			return nil, err
		}
	}
	b := &Batch{}
	db := &diskBatch{start: d.readSeq}
	size := 0
	full := func(n int) bool {
		k := len(b.Records)
		return k > 0 && ((l.MaxEvents > 0 && k >= l.MaxEvents) || (l.MaxBytes > 0 && size+n > l.MaxBytes))
	}
	var err error
	for d.readSeq < d.writeSeq && !full(0) {
		if cs := d.cacheStart(); d.readSeq >= cs && d.ch < len(d.cache) {
			limit := false
			for d.ch < len(d.cache) {
				c := &d.cache[d.ch]
				if full(len(c.data)) {
					limit = true
					break
				}
				b.Records = append(b.Records, c.data)
				size += len(c.data)
				db.bytes += c.size
				db.records++
				d.readSeq = c.seq + 1
				d.rseg, d.roff = c.seg, c.end
				d.cacheBytes -= int64(len(c.data))
				*c = cached{}
				d.ch++
			}
			d.evict()
			if limit {
				break
			}
			continue
		}
		// From disk, up to where the cache starts.
		stop := d.cacheStart()
		segs := make([]segment, len(d.segs))
		for i, s := range d.segs {
			segs[i] = *s
		}
		d.mu.Unlock()
		var exhausted bool
		exhausted, err = d.readDisk(segs, stop, l, b, &size, db)
		d.mu.Lock()
		if err != nil || full(0) || exhausted {
			if err == nil && exhausted && d.readSeq < stop {
				// The files end before the records the cache does not hold:
				// they are lost (counted by recovery); go on after them.
				d.log.Error("buffer: records missing from the segment files", "from_seq", d.readSeq, "to_seq", stop)
				d.readSeq = stop
			}
			break
		}
	}
	db.end = d.readSeq
	db.seg, db.off = d.rseg, d.roff
	d.unread -= db.records
	if d.unread < 0 {
		d.unread = 0
	}
	if db.end > db.start {
		b.Seq = db.start
		b.impl = db
		d.inflight = append(d.inflight, db)
	}
	d.mu.Unlock()
	if err != nil && len(b.Records) == 0 {
		if db.end > db.start {
			_ = d.Ack(b)
		}
		return nil, err
	}
	if len(b.Records) == 0 && db.end > db.start {
		// Only skipped records: acknowledge the range and read again.
		_ = d.Ack(b)
		d.readMu.Unlock()
		defer d.readMu.Lock()
		return d.Read(ctx, l)
	}
	return b, nil
}

// enough reports whether a batch of l can be filled now; d.mu is held.
func (d *Disk) enough(l Limits) bool {
	avail := int64(d.writeSeq - d.readSeq)
	if l.MaxEvents > 0 && avail >= int64(l.MaxEvents) {
		return true
	}
	if l.MaxBytes > 0 {
		// Framed bytes of what is unread, approximated by the cache (the
		// reader keeps up) or assumed plenty (the reader is behind).
		if d.readSeq < d.cacheStart() {
			return true
		}
		return d.cacheBytes >= int64(l.MaxBytes)
	}
	return l.MaxEvents <= 0
}

// readDisk reads records from the segment files into b, from the reader's
// position up to sequence stop or the batch limits. It returns the number of
// whether it reached the end of the files before stop. d.readMu is held,
// d.mu is not.
func (d *Disk) readDisk(segs []segment, stop uint64, l Limits, b *Batch, size *int, db *diskBatch) (exhausted bool, err error) {
	d.mu.Lock()
	seq, segID, off := d.readSeq, d.rseg, d.roff
	d.mu.Unlock()
	idx := -1
	for i, s := range segs {
		if s.id >= segID {
			idx = i
			if s.id > segID {
				off = segHeaderSize
			}
			break
		}
	}
	if idx < 0 {
		return true, nil
	}
	if len(d.rbuf) == 0 {
		d.rbuf = make([]byte, 256<<10)
	}
	// Records are copied (or decompressed) into arena blocks that the batch
	// keeps until Ack, which recycles them. A full block is replaced, not
	// grown, so records already sliced from it stay valid.
	arena := d.getArena()
	reserve := func(n int) {
		if cap(arena)-len(arena) < n {
			db.arenas = append(db.arenas, arena)
			arena = make([]byte, 0, max(arenaSize, n))
		}
	}
	lastData := -1 // the last segment with frames written
	for i, s := range segs {
		if s.written > segHeaderSize {
			lastData = i
		}
	}
outer:
	for idx < len(segs) {
		s := segs[idx]
		if off < segHeaderSize {
			off = segHeaderSize
		}
		if off >= s.written {
			if idx >= lastData {
				exhausted = true
				break
			}
			idx++
			off = segHeaderSize
			continue
		}
		if d.rfile == nil || d.rfileID != s.id {
			if d.rfile != nil {
				d.rfile.Close()
				d.rfile = nil
			}
			f, oerr := d.o.fs.OpenFile(d.path(segName(s.id)), os.O_RDONLY, 0)
			if oerr != nil {
				err = oerr
				break
			}
			d.rfile, d.rfileID = f, s.id
		}
		want := min(int64(len(d.rbuf)), s.written-off)
		n, rerr := d.rfile.ReadAt(d.rbuf[:want], off)
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			err = rerr
			break
		}
		buf := d.rbuf[:n]
		if n == 0 {
			// The file is shorter than expected: go on with the next one.
			off = s.written
			continue
		}
		p := 0
		for p < len(buf) {
			fr, st := parseFrame(buf[p:])
			switch st {
			case frameShort:
				need := int64(frameHeader)
				if len(buf)-p >= 12 {
					need += int64(binary.LittleEndian.Uint32(buf[p+8:]) & lenMask)
				}
				if off+int64(p)+need <= s.written {
					// The rest is in the file: refill (grow for a big frame).
					if p == 0 {
						d.rbuf = make([]byte, max(2*len(d.rbuf), int(need)))
					}
					off += int64(p)
					continue outer
				}
				if len(buf)-p < 12 {
					// Torn tail: skip to the end of the segment.
					off = s.written
					continue outer
				}
				// A length running past the end: damage; resynchronise.
				fallthrough
			case frameBad:
				j := nextMarker(buf, p+1)
				if j < 0 {
					// keep the last 3 bytes: a marker may straddle the refill
					adv := max(len(buf)-3, p+1)
					off += int64(adv)
					if off+int64(len(buf)-adv) >= s.written {
						off = s.written
					}
					continue outer
				}
				p = j
				continue
			}
			if fr.seq < seq {
				p += fr.size
				continue
			}
			if fr.seq >= stop {
				off += int64(p)
				break outer
			}
			rec := fr.payload
			if fr.zstd {
				reserve(4*len(fr.payload) + 4096)
				start := len(arena)
				out, derr := d.zdec.DecodeAll(fr.payload, arena)
				if derr != nil {
					d.log.Error("buffer: cannot decompress a record with a good CRC", "segment", segName(s.id), "offset", off+int64(p), "error", derr)
					p += fr.size
					seq = fr.seq + 1
					continue
				}
				if &out[:cap(out)][cap(out)-1] != &arena[:cap(arena)][cap(arena)-1] {
					// The decoder needed a bigger block.
					db.arenas = append(db.arenas, arena)
					start = 0
					out = out[len(arena):]
				}
				arena = out
				rec = arena[start:]
				arena = arena[:start]
			}
			k := len(b.Records)
			if k > 0 && ((l.MaxEvents > 0 && k >= l.MaxEvents) || (l.MaxBytes > 0 && *size+len(rec) > l.MaxBytes)) {
				off += int64(p)
				break outer
			}
			if !fr.zstd {
				reserve(len(rec))
				s := len(arena)
				arena = append(arena, rec...)
				rec = arena[s:len(arena):len(arena)]
			} else {
				s := len(arena)
				arena = arena[:s+len(rec)]
				rec = arena[s:len(arena):len(arena)]
			}
			b.Records = append(b.Records, rec)
			*size += len(rec)
			db.bytes += int64(fr.size)
			db.records++
			seq = fr.seq + 1
			p += fr.size
		}
		off += int64(p)
	}
	db.arenas = append(db.arenas, arena)
	d.mu.Lock()
	if segs := segs; idx >= 0 && idx < len(segs) {
		d.rseg = segs[idx].id
	}
	d.roff = off
	d.readSeq = seq
	d.mu.Unlock()
	return exhausted, err
}

// Ack marks a batch done. The ack position moves over every batch acked
// so far without a gap; the ledger file is rewritten at once (no fsync), so
// a killed process delivers again only the batches in flight.
func (d *Disk) Ack(b *Batch) error {
	db, ok := b.impl.(*diskBatch)
	if !ok || db == nil {
		return nil
	}
	d.mu.Lock()
	if db.done {
		d.mu.Unlock()
		return nil
	}
	db.done = true
	for _, a := range db.arenas {
		if cap(a) == arenaSize && len(d.freeArenas) < maxFreeArenas {
			d.freeArenas = append(d.freeArenas, a)
		}
	}
	db.arenas = nil
	d.bytes -= db.bytes
	d.records -= db.records
	d.spaceCond.Broadcast()
	moved := false
	for len(d.inflight) > 0 && d.inflight[0].done {
		x := d.inflight[0]
		d.inflight[0] = nil
		d.inflight = d.inflight[1:]
		d.ackSeq = x.end
		moved = true
	}
	if !moved {
		d.mu.Unlock()
		return nil
	}
	for len(d.marks) > 1 && d.marks[1].seq <= d.ackSeq {
		d.marks = d.marks[1:]
	}
	if len(d.marks) == 1 && d.marks[0].seq < d.ackSeq {
		if d.ackSeq >= d.writeSeq {
			d.marks = d.marks[:0]
		}
	}
	if d.bytes < 0 {
		d.bytes = 0
	}
	d.spaceCond.Broadcast()
	if d.wantRemove() {
		d.workCond.Signal()
	}
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return nil
	}
	return d.writeLedger(false)
}

// Seal refuses further writes and lets Read drain.
func (d *Disk) Seal() {
	d.mu.Lock()
	d.sealed = true
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
