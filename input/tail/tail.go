// Package tail is the tail input: it follows files matched by globs through
// rotations, truncations and restarts, and emits every line exactly once as
// long as the checkpoint and the acknowledgements are honoured (at least once
// across a crash). See docs/input-tail.md for the design.
package tail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/input"
	ilines "github.com/sidelog/sidelog/input/lines"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/plugins"
)

func init() {
	plugins.RegisterInput("tail", Plugin)
}

// Plugin is the registry entry of the tail input.
var Plugin = plugins.Input{
	Config: func() any { return DefaultConfig() },
	New: func(cfg any, env input.Env) (input.Input, error) {
		c, ok := cfg.(*Config)
		if !ok {
			return nil, fmt.Errorf("tail: config is %T, not *tail.Config", cfg)
		}
		return New(c, env)
	},
}

// chunksPerTurn bounds how many reads one file gets before the reader moves
// on to the next ready file (fairness).
const chunksPerTurn = 4

// Tailer is the tail input.
type Tailer struct {
	cfg        Config
	name       string
	log        *slog.Logger
	newAsm     func() parser.Assembler
	exitOnEOF  bool
	ckptPath   string
	firstStart bool // no checkpoint existed

	emit input.Emit

	mu     sync.Mutex
	files  map[key]*file    // open and remembered (closed) files
	byPath map[string]*file // open files by matched and resolved path

	qmu   sync.Mutex
	queue []*file
	qsig  chan struct{}

	trigger chan struct{} // a scan is wanted (fsnotify)
	scanN   uint64        // scanner goroutine only
	initial bool          // the first scan of this run (scanner only)
	// changed: the scan in progress found a change (a new file, a rename,
	// a deletion, a truncation, a rotated file not yet finished); the
	// next one comes after poll_interval. Scanner only.
	changed bool
	// fastUntil: rescans keep to poll_interval until then, because a scan
	// found a change fsnotify had not reported. Scanner only.
	fastUntil  time.Time
	missGrace  time.Duration
	pollReset  atomic.Bool // an fsnotify error: back to poll_interval
	seenSet    map[string]struct{}
	headBuf    []byte // scanner's fingerprint buffer
	readerHead []byte // reader's fingerprint buffer

	dirty        atomic.Bool
	inflight     atomic.Int64
	inflightZero chan struct{}
	ckptMu       sync.Mutex
	ckptBuf      []byte
	ckptAll      []*file      // persist's scratch (ckptMu)
	ckptFiles    []checkpoint // persist's scratch (ckptMu)

	watchMu   sync.Mutex
	watched   map[string]bool
	unwatched map[string]bool // required directories that could not be watched
	watcher   dirWatcher

	deadlines map[*file]time.Time // reader only

	recycle      recycler       // read memory handed back by the engine
	pending      []*event.Event // small batches gathered by send (reader only)
	pendingSince time.Time      // when the first of them was gathered
	// scratch is the reader's read buffer: a small read is copied out of
	// it (so a 40-byte append costs a 40-byte allocation, not a
	// read_buffer_bytes one), a large one takes it over. Reader only.
	scratch []byte

	stats counters
}

// New builds a tail input.
func New(cfg *Config, env input.Env) (*Tailer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Tailer{
		cfg:          *cfg,
		name:         env.Name,
		log:          log,
		newAsm:       env.NewAssembler,
		exitOnEOF:    cfg.ExitOnEOF || env.ExitOnEOF,
		files:        map[key]*file{},
		byPath:       map[string]*file{},
		qsig:         make(chan struct{}, 1),
		trigger:      make(chan struct{}, 1),
		inflightZero: make(chan struct{}, 1),
		seenSet:      map[string]struct{}{},
		headBuf:      make([]byte, cfg.FingerprintBytes),
		readerHead:   make([]byte, cfg.FingerprintBytes),
		watched:      map[string]bool{},
		unwatched:    map[string]bool{},
		deadlines:    map[*file]time.Time{},
		missGrace:    defaultMissGrace,
	}
	for i, p := range t.cfg.Paths {
		t.cfg.Paths[i] = filepath.Clean(p)
	}
	if env.DataDir == "" {
		t.firstStart = true
		log.Warn("tail: no data_dir: checkpoints are not kept, files are read again at each start")
		return t, nil
	}
	t.ckptPath = checkpointPath(env.DataDir, env.Name)
	doc, found, err := loadCheckpoints(t.ckptPath)
	switch {
	case errors.Is(err, errCorrupt):
		aside := fmt.Sprintf("%s.corrupt-%d", t.ckptPath, time.Now().Unix())
		_ = os.Rename(t.ckptPath, aside)
		log.Error("tail: checkpoint is corrupt, moved aside; known files are read again from their start", "error", err, "moved_to", aside)
	case err != nil:
		return nil, fmt.Errorf("tail: %w", err)
	}
	t.firstStart = !found
	for _, c := range doc.Files {
		k := key{c.Dev, c.Ino}
		f := &file{
			key: k, path: c.Path,
			id:  event.FileID{Dev: c.Dev, Ino: c.Ino, Fingerprint: c.FP},
			mFP: c.MatchFP, mLen: c.MatchLen,
			tr:     newTracker(c.Gen, c.Offset, &t.dirty),
			offset: c.Offset, lineStart: c.Offset,
			seen: time.Unix(c.Seen, 0),
		}
		f.idSet = c.MatchLen > 0
		t.files[k] = f
	}
	return t, nil
}

// Run reads until ctx is cancelled (or, with exit_on_eof, until every file is
// read to its end and acknowledged).
func (t *Tailer) Run(ctx context.Context, emit input.Emit) error {
	t.emit = emit
	defer t.closeAll()
	var w dirWatcher
	if t.cfg.Watch && !t.exitOnEOF {
		// watching starts before the first scan: nothing created after the
		// scan can go unnoticed
		var err error
		if w, err = newWatcher(t); err != nil {
			t.log.Warn("tail: fsnotify unavailable, polling only", "error", err)
		} else {
			t.watchMu.Lock()
			t.watcher = w
			t.watchMu.Unlock()
			t.watchBaseDirs()
		}
	}
	t.initial = true
	t.scan(time.Now())
	t.initial = false
	if t.firstStart {
		t.persist() // records read_from: tail offsets before anything is read
	}
	if t.exitOnEOF {
		return t.runToEOF(ctx)
	}

	sctx, stopScan := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if w != nil {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(sctx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); t.scanLoop(sctx) }()

	err := t.readLoop(ctx)
	stopScan()
	wg.Wait()
	if w != nil {
		w.close()
	}
	if err != nil { // the pipeline is aborting: stop at once
		t.persist()
		return err
	}
	err = t.drain(false)
	t.waitInflight(t.cfg.DrainTimeout)
	t.persist()
	return err
}

// runToEOF is exit_on_eof: read every matched file to its end, emit the
// held partial lines, wait for every acknowledgement, persist.
func (t *Tailer) runToEOF(ctx context.Context) error {
	err := t.drain(true)
	if err == nil {
		done := make(chan struct{})
		go func() {
			t.waitInflight(-1)
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			t.waitInflight(t.cfg.DrainTimeout)
		}
	}
	t.persist()
	return err
}

// openFiles returns the open files.
func (t *Tailer) openFiles() []*file {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*file, 0, len(t.files))
	for _, f := range t.files {
		f.mu.Lock()
		open := f.fd != nil
		f.mu.Unlock()
		if open {
			out = append(out, f)
		}
	}
	return out
}

// drain reads the open files to their end: to their size when the drain
// starts on a graceful stop, to a read of zero bytes with toEOF. toEOF also
// emits the held partial lines (the files are complete).
func (t *Tailer) drain(toEOF bool) error {
	for _, f := range t.openFiles() {
		t.verify(f)
		var target int64 = -1
		if !toEOF {
			if st, err := f.statFD(); err == nil {
				target = st.Size()
			}
		}
		for {
			batch, more := t.readChunk(f, time.Now(), target)
			if err := t.send(batch); err != nil {
				return err
			}
			if !more {
				break
			}
		}
		f.mu.Lock()
		var out []*event.Event
		if toEOF {
			out = t.sealPartial(f, time.Now(), nil)
		}
		if f.asm != nil {
			out = f.asm.Flush(out)
		}
		f.mu.Unlock()
		delete(t.deadlines, f)
		if err := t.send(out); err != nil {
			return err
		}
	}
	return t.flush()
}

func (f *file) statFD() (os.FileInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fd == nil {
		return nil, os.ErrClosed
	}
	return f.fd.Stat()
}

// maxPending is how many events of small reads the reader gathers into
// one batch before it emits them; maxPendingAge how long the first of them
// may wait while the reader keeps finding files to read.
// linger is how long the reader, with events gathered and no file ready,
// waits for more before it emits them.
const (
	maxPending    = 1024
	maxPendingAge = 50 * time.Millisecond
	linger        = 10 * time.Millisecond
)

// send hands a batch to the pipeline, in order. The small batches of slow
// files (one line each, say) are gathered and emitted together when the
// reader has nothing else to read (flush) or maxPending events are
// gathered: a thousand files appended once a second cost one pass through
// the pipeline, not a thousand. A large batch is emitted as it is, after
// those gathered before it. Reader only.
func (t *Tailer) send(batch []*event.Event) error {
	if len(batch) == 0 {
		return nil
	}
	if len(t.pending)+len(batch) > maxPending {
		if err := t.flush(); err != nil {
			return err
		}
	}
	if len(batch) >= maxPending/4 && len(t.pending) == 0 {
		return t.emit(batch)
	}
	if t.pending == nil {
		t.pending = make([]*event.Event, 0, 64)
		t.pendingSince = time.Now()
	}
	t.pending = append(t.pending, batch...)
	return nil
}

// flush emits the gathered events. Reader only.
func (t *Tailer) flush() error {
	if len(t.pending) == 0 {
		return nil
	}
	b := t.pending
	t.pending = nil // the pipeline owns b now
	return t.emit(b)
}

func (t *Tailer) batchDone() {
	if t.inflight.Add(-1) == 0 {
		select {
		case t.inflightZero <- struct{}{}:
		default:
		}
	}
}

// waitInflight waits until every emitted batch is released, at most d
// (forever when d < 0).
func (t *Tailer) waitInflight(d time.Duration) bool {
	var timeout <-chan time.Time
	if d >= 0 {
		tm := time.NewTimer(d)
		defer tm.Stop()
		timeout = tm.C
	}
	for t.inflight.Load() > 0 {
		select {
		case <-t.inflightZero:
		case <-timeout:
			return t.inflight.Load() == 0
		}
	}
	return true
}

func (t *Tailer) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, f := range t.files {
		f.mu.Lock()
		if f.fd != nil {
			f.fd.Close()
			f.fd = nil
		}
		f.mu.Unlock()
	}
}

// ---- the reader ----

func (t *Tailer) enqueue(f *file) {
	if !f.queued.CompareAndSwap(false, true) {
		return
	}
	t.qmu.Lock()
	t.queue = append(t.queue, f)
	t.qmu.Unlock()
	select {
	case t.qsig <- struct{}{}:
	default:
	}
}

func (t *Tailer) dequeue() *file {
	t.qmu.Lock()
	defer t.qmu.Unlock()
	if len(t.queue) == 0 {
		return nil
	}
	f := t.queue[0]
	t.queue[0] = nil
	t.queue = t.queue[1:]
	if len(t.queue) == 0 {
		t.queue = t.queue[:0:0]
	}
	return f
}

// readLoop reads ready files until ctx is cancelled.
func (t *Tailer) readLoop(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if ctx.Err() != nil {
			return nil
		}
		f := t.dequeue()
		if f == nil {
			if t.pending != nil {
				// gathered events: wait briefly for more ready files (a
				// burst of appends to many files arrives as events over a
				// few milliseconds), then emit them together
				if wait := t.pendingSince.Add(linger).Sub(time.Now()); wait > 0 {
					timer.Reset(wait)
					select {
					case <-ctx.Done():
						return nil
					case <-t.qsig:
						continue
					case <-timer.C:
					}
				}
				if err := t.flush(); err != nil {
					return err
				}
			}
			next, ok := t.nextDeadline()
			if ok {
				timer.Reset(time.Until(next))
			} else {
				timer.Reset(time.Hour)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-t.qsig:
			case <-timer.C:
				if err := t.flushDue(time.Now()); err != nil {
					return err
				}
			}
			continue
		}
		f.queued.Store(false)
		t.verify(f)
		more := false
		for i := 0; i < chunksPerTurn; i++ {
			var batch []*event.Event
			batch, more = t.readChunk(f, time.Now(), -1)
			if err := t.send(batch); err != nil {
				return err
			}
			if !more {
				break
			}
		}
		if more {
			t.enqueue(f)
		}
		now := time.Now()
		if err := t.flushDue(now); err != nil {
			return err
		}
		if t.pending != nil && now.Sub(t.pendingSince) >= maxPendingAge {
			if err := t.flush(); err != nil {
				return err
			}
		}
	}
}

func (t *Tailer) nextDeadline() (time.Time, bool) {
	var min time.Time
	for _, d := range t.deadlines {
		if min.IsZero() || d.Before(min) {
			min = d
		}
	}
	return min, !min.IsZero()
}

// flushDue flushes the assemblers whose deadline has passed.
func (t *Tailer) flushDue(now time.Time) error {
	for f, d := range t.deadlines {
		if d.After(now) {
			continue
		}
		delete(t.deadlines, f)
		f.mu.Lock()
		var out []*event.Event
		if f.asm != nil {
			out = f.asm.Flush(nil)
			t.noteDeadline(f)
		}
		f.mu.Unlock()
		if err := t.send(out); err != nil {
			return err
		}
	}
	return nil
}

// noteDeadline records the assembler's deadline. Call with f.mu held.
func (t *Tailer) noteDeadline(f *file) {
	if f.asm == nil {
		return
	}
	if d, ok := f.asm.Deadline(); ok {
		t.deadlines[f] = d
	} else {
		delete(t.deadlines, f)
	}
}

// verify compares the file's first bytes with its fingerprint before a turn
// of reads, when the reader has not read the file yet in this run (just
// opened, resumed from the checkpoint): a file truncated and written again
// past our offset (copytruncate) would otherwise be read from the old
// offset. Once the reader has read from it, each read checks the bytes just
// before its offset instead, in the same system call (see readChunk).
func (t *Tailer) verify(f *file) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fd == nil || f.offset == 0 || f.mLen == 0 || f.truncated || f.winN > 0 {
		return
	}
	if !f.checkPrefix(f.readHead(t.readerHead, int64(f.mLen))) {
		f.truncated = true
	}
}

// readChunk reads one chunk of f and returns the events it completes.
// more reports that the read filled the buffer (there is likely more to
// read). target >= 0 stops reading at that offset (graceful stop).
func (t *Tailer) readChunk(f *file, now time.Time, target int64) (batch []*event.Event, more bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fd == nil {
		return nil, false
	}
	if f.truncated {
		batch = t.newGeneration(f, now)
		return batch, true
	}
	if !f.idSet {
		if st, err := f.fd.Stat(); err == nil {
			f.checkPrefix(f.readHead(t.readerHead, st.Size()))
		}
	}
	p := len(f.partial)
	size := int(t.cfg.ReadBufferBytes)
	if p > size/2 {
		size += p
	}
	want := size - p - winBytes // the buffer stays read_buffer_bytes
	if target >= 0 {
		if f.offset >= target {
			return nil, false
		}
		if r := target - f.offset; r < int64(want) {
			want = int(r)
		}
	}
	// The scratch holds, from s: the held partial line, then the bytes
	// read. The read starts w bytes early, over the last bytes consumed
	// (the window, kept in f.win; they end the partial line, or go in
	// front of it in the winBytes reserved): if they are no longer the
	// same, or the file is shorter, it was truncated (and maybe written
	// again past our offset) since the last read.
	w := f.winN
	s := winBytes + p
	if cap(t.scratch) < s+want {
		if t.scratch != nil {
			t.recycle.putChunk(t.scratch)
		}
		t.scratch = t.recycle.chunk(s + want)
	}
	chunk := t.scratch
	buf := chunk[:s+want]
	copy(buf[winBytes:], f.partial)
	n, err := f.pread(buf[s-w:], f.offset-int64(w))
	if err != nil {
		t.log.Warn("tail: read failed", "path", f.path, "error", err)
	}
	if w > 0 {
		if err == nil && (n < w || !bytes.Equal(buf[s-w:s], f.win[:w])) {
			f.truncated = true // the next call starts a new generation
			return nil, true
		}
		if n -= w; n < 0 {
			n = 0
		}
	}
	if n == 0 {
		return t.atEOF(f, now), false
	}
	// the window for the next read: the last bytes now consumed
	end := s + n
	f.winN = copy(f.win[:], buf[max(min(s-w, winBytes), end-winBytes):end])
	data := buf[winBytes:end]
	if len(data) <= t.smallRead() {
		// a small read (a slow file): copy it out and keep the scratch,
		// so that its events hold a buffer of their own size
		data, chunk = bytes.Clone(data), nil
	} else {
		t.scratch = nil // the events own it now
	}
	f.offset += int64(n)
	f.offsetA.Store(f.offset)
	if f.mLen < t.cfg.FingerprintBytes {
		// learn the fingerprint of a short file (or of a new generation)
		// from the bytes consumed, so that the next truncation shows:
		// from the bytes just read when they continue the known prefix
		// (checked before this read), else read again
		if !f.extendPrefix(buf[s:end], f.offset-int64(n), t.cfg.FingerprintBytes) &&
			!f.checkPrefix(f.readHead(t.readerHead, f.offset)) {
			f.truncated = true
		}
	}
	t.stats.bytesRead.Add(uint64(n))
	batch = t.split(f, data, chunk, now)
	if f.asm != nil {
		t.noteDeadline(f)
	}
	return batch, n == want && target < 0 || target >= 0 && f.offset < target
}

// winBytes is how many bytes before its offset each read of a file reads
// again and compares with what it consumed there.
const winBytes = 32

// smallRead is the largest read that is copied out of the reader's
// scratch buffer rather than handed over with it.
func (t *Tailer) smallRead() int { return int(t.cfg.ReadBufferBytes) / 8 }

// split cuts data (the held partial line followed by what was just read)
// into line events, holds the unterminated rest, and seals the batch.
// With chunk (the read buffer data lies in), the recycler takes chunk back
// with the event slab once every event came back; without, data and the
// slab are sized for this read and left to the garbage collector.
func (t *Tailer) split(f *file, data, chunk []byte, now time.Time) []*event.Event {
	pooled := chunk != nil
	base := f.offset - int64(len(data)) // file offset of data[0]
	maxLine := int(t.cfg.MaxLine)
	n := bytes.Count(data, []byte{'\n'}) + 1
	var slab []event.Event
	if pooled {
		slab = t.recycle.slab(n)
	} else {
		slab = make([]event.Event, n)
	}
	lines := make([]*event.Event, 0, n)
	gen := f.tr.gen
	s := 0
	for {
		i := bytes.IndexByte(data[s:], '\n')
		if i < 0 {
			break
		}
		start := base + int64(s)
		line := data[s : s+i : s+i]
		s += i + 1
		if f.skipping { // the rest of a line already cut
			f.skipping = false
			f.lineStart = base + int64(s)
			continue
		}
		f.lineStart = base + int64(s)
		line, keep := ilines.Trim(line) // the same rule as sidelog test
		if !keep {
			continue
		}
		ev := &slab[len(lines)]
		off := base + int64(s)
		if len(line) > maxLine {
			line = ilines.Cut(line, maxLine) // never inside a UTF-8 character
			ev.Flags = event.Truncated
			off = start + int64(maxLine)
		}
		ev.Raw = line
		ev.Input = t.name
		ev.Path = f.path
		ev.Time = now
		ev.Pos = event.Position{FileID: f.id, Generation: gen, Offset: off}
		lines = append(lines, ev)
	}
	rest := data[s:]
	switch {
	case f.skipping:
		f.partial = f.partial[:0]
	case len(rest) >= maxLine:
		ev := &slab[len(lines)]
		ev.Raw = ilines.Cut(rest, maxLine)
		ev.Flags = event.Truncated
		ev.Input, ev.Path, ev.Time = t.name, f.path, now
		ev.Pos = event.Position{FileID: f.id, Generation: gen, Offset: f.lineStart + int64(maxLine)}
		lines = append(lines, ev)
		f.skipping = true
		f.partial = f.partial[:0]
	default:
		f.partial = append(f.partial[:0], rest...)
	}
	t.stats.linesRead.Add(uint64(len(lines)))
	out, ack := t.seal(f, lines, f.lineStart)
	// The held partial line was copied out of data, so only the events
	// reference the chunk and the slab: those that come back through
	// Recycle, and none that an assembler absorbed into a joined event
	// during seal (its bytes were copied; event.Join cleared its ack).
	if !pooled {
		return out
	}
	live := 0
	for _, ev := range lines {
		if ev.AckGroup() != nil {
			live++
		}
	}
	t.recycle.track(chunk[:cap(chunk)], slab, ack, live)
	return out
}

// seal attaches one acknowledgement to lines, registers the batch (ending
// at end) with the tracker, and runs the lines through the assembler. It
// returns the events to emit and the acknowledgement (nil without lines).
// Call with f.mu held.
func (t *Tailer) seal(f *file, lines []*event.Event, end int64) ([]*event.Event, *event.Ack) {
	if len(lines) == 0 {
		f.tr.addDone(end)
		return nil, nil
	}
	tr := f.tr
	seq := tr.add(end)
	t.inflight.Add(1)
	ack := event.NewAck(len(lines), func() {
		tr.done(seq)
		t.batchDone()
	})
	for _, ev := range lines {
		ev.SetAck(ack)
	}
	if f.asm == nil {
		return lines, ack
	}
	out := make([]*event.Event, 0, len(lines))
	for _, ev := range lines {
		out = f.asm.Push(ev, out)
	}
	return out, ack
}

// sealPartial emits the held unterminated line as it is (the file was
// rotated away, deleted or is read for the last time). Call with f.mu held.
func (t *Tailer) sealPartial(f *file, now time.Time, out []*event.Event) []*event.Event {
	if f.skipping {
		f.skipping = false
		f.lineStart = f.offset
		f.tr.addDone(f.offset)
		return out
	}
	if len(f.partial) == 0 {
		return out
	}
	raw := f.partial
	if raw[len(raw)-1] == '\r' {
		raw = raw[:len(raw)-1]
	}
	ev := &event.Event{
		Raw:   bytes.Clone(raw),
		Input: t.name, Path: f.path, Time: now,
		Pos: event.Position{FileID: f.id, Generation: f.tr.gen, Offset: f.offset},
	}
	f.partial = nil
	f.lineStart = f.offset
	t.stats.linesRead.Add(1)
	if len(ev.Raw) == 0 {
		f.tr.addDone(f.offset)
		return out
	}
	sealed, _ := t.seal(f, []*event.Event{ev}, f.offset)
	return append(out, sealed...)
}

// atEOF runs when a read returns nothing: a file renamed away (after
// rotate_wait) or deleted is finished and closed. Call with f.mu held.
func (t *Tailer) atEOF(f *file, now time.Time) []*event.Event {
	deleted := !f.deletedAt.IsZero()
	rotated := !f.rotatedAt.IsZero() && now.Sub(f.rotatedAt) >= t.cfg.RotateWait
	if !deleted && !rotated {
		return nil
	}
	out := t.sealPartial(f, now, nil)
	if f.asm != nil {
		out = f.asm.Flush(out)
		delete(t.deadlines, f)
	}
	t.closeLocked(f)
	return out
}

// closeLocked closes f and forgets its paths; the identity stays known for
// the checkpoint. Call with f.mu held.
func (t *Tailer) closeLocked(f *file) {
	if f.fd == nil {
		return
	}
	f.fd.Close()
	f.fd = nil
	f.asm = nil
	f.partial = nil
	t.mu.Lock()
	if t.byPath[f.path] == f {
		delete(t.byPath, f.path)
	}
	if f.target != "" && t.byPath[f.target] == f {
		delete(t.byPath, f.target)
	}
	t.mu.Unlock()
	t.stats.closed.Add(1)
}

// newGeneration handles a truncation: what was held is emitted, and reading
// starts again at offset 0 under the next generation. Call with f.mu held.
func (t *Tailer) newGeneration(f *file, now time.Time) []*event.Event {
	out := t.sealPartial(f, now, nil)
	if f.asm != nil {
		out = f.asm.Flush(out)
	}
	f.truncated = false
	f.mFP, f.mLen, f.vhLen = 0, 0, 0 // learnt again from the new content
	f.tr = newTracker(f.tr.gen+1, 0, &t.dirty)
	t.dirty.Store(true)
	f.offset, f.lineStart = 0, 0
	f.winN = 0
	f.offsetA.Store(0)
	f.partial = f.partial[:0]
	f.skipping = false
	t.stats.truncations.Add(1)
	t.log.Debug("tail: truncated: new generation", "path", f.path, "generation", f.tr.gen)
	return out
}

// ---- discovery ----

// missHold is how long rescans keep to poll_interval after one found a
// change that fsnotify had not reported (a network or overlay volume):
// long enough not to pay a missed change every max_poll_interval again.
const missHold = 10 * time.Minute

// defaultMissGrace is how old a change must be before a rescan that finds
// it without an fsnotify event counts it as missed (events arrive late
// under load; a late one is not a miss). Tailer.missGrace (tests shorten
// it).
const defaultMissGrace = 2 * time.Second

// scanLoop rescans the globs: at once when fsnotify reports a creation, a
// removal or a rename; else after poll_interval, doubled after each scan
// that found nothing new up to max_poll_interval while fsnotify is healthy
// (see nextPoll). It also writes the checkpoint.
func (t *Tailer) scanLoop(ctx context.Context) {
	interval := t.cfg.PollInterval
	timer := time.NewTimer(interval)
	defer timer.Stop()
	ckpt := time.NewTicker(t.cfg.CheckpointInterval)
	defer ckpt.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-t.trigger:
		case <-ckpt.C:
			if t.dirty.Load() {
				t.persist()
			}
			continue
		}
		now := time.Now()
		t.scan(now)
		interval = t.nextPoll(interval, now)
		timer.Reset(interval) // Go 1.23 timers: no stale tick after Reset
	}
}

// nextPoll is the pause before the next rescan: poll_interval unless
// fsnotify is healthy (running, every required directory watched, no error
// and no missed change lately) and the last scan found nothing new; then
// twice the last pause, at most max_poll_interval.
func (t *Tailer) nextPoll(cur time.Duration, now time.Time) time.Duration {
	fast := t.cfg.PollInterval
	reset := t.pollReset.Swap(false)
	if t.cfg.MaxPollInterval <= fast || reset || t.changed || now.Before(t.fastUntil) || !t.watchHealthy() {
		return fast
	}
	return min(2*cur, t.cfg.MaxPollInterval)
}

// missed records that a scan found a change fsnotify had not reported.
func (t *Tailer) missed(path, what string, now time.Time) {
	if !now.Before(t.fastUntil) {
		t.log.Info("tail: fsnotify missed a change (network or overlay volume?): rescanning every poll_interval",
			"path", path, "change", what, "for", missHold)
	}
	t.fastUntil = now.Add(missHold)
	t.stats.missedEvents.Add(1)
}

// scan matches the globs, opens new files, notices renamed, deleted and
// truncated ones, releases deleted files held too long and queues files
// with unread bytes. It watches the directories the globs list.
func (t *Tailer) scan(now time.Time) {
	t.scanN++
	t.stats.scans.Add(1)
	t.changed = false
	t.retryWatches()
	clear(t.seenSet)
	for _, pat := range t.cfg.Paths {
		globDirs(pat, func(p string) {
			if _, dup := t.seenSet[p]; dup || excluded(t.cfg.Exclude, p) {
				return
			}
			t.seenSet[p] = struct{}{}
			st, err := os.Stat(p)
			if err != nil || !st.Mode().IsRegular() {
				return
			}
			t.visit(p, st, now)
		}, t.watchListed)
	}
	t.sweep(now)
}

// watchListed watches a directory a glob walk listed (or looked into).
func (t *Tailer) watchListed(dir string) { t.watchDir(dir, false) }

// watching reports that fsnotify runs (scanner only: set before the
// first scan).
func (t *Tailer) watching() bool {
	t.watchMu.Lock()
	defer t.watchMu.Unlock()
	return t.watcher != nil
}

func statKey(st os.FileInfo) (key, uint64) {
	s := st.Sys().(*syscall.Stat_t)
	return key{uint64(s.Dev), s.Ino}, uint64(s.Nlink)
}

// visit handles one matched path.
func (t *Tailer) visit(p string, st os.FileInfo, now time.Time) {
	k, _ := statKey(st)
	t.mu.Lock()
	f := t.files[k]
	t.mu.Unlock()
	if f != nil {
		f.mu.Lock()
		if f.fd != nil {
			t.refresh(f, p, st, now)
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
	}
	t.open(p, now)
}

// refresh updates an open file seen at path p with size. Call with f.mu held.
func (t *Tailer) refresh(f *file, p string, st os.FileInfo, now time.Time) {
	if f.seenScan != t.scanN {
		f.altPath = ""
	}
	f.seenScan = t.scanN
	f.seen = now
	if p == f.path {
		f.pathScan = t.scanN
	} else if f.altPath == "" {
		f.altPath = p
	}
	if !f.rotatedAt.IsZero() {
		f.rotatedAt = time.Time{} // back under a matched path
	}
	ev := f.wev.Load()
	if size := st.Size(); size > f.size && size > f.offset && ev == f.wevSeen && !f.queued.Load() &&
		now.Sub(st.ModTime()) > t.missGrace && !t.initial && t.watching() {
		// grew since the last scan, long enough ago, without a write
		// event, and the reader was not told
		t.missed(f.path, "write", now)
	}
	f.wevSeen = ev
	t.checkSize(f, st.Size(), st.ModTime())
}

// checkSize notices growth and truncation. Call with f.mu held.
func (t *Tailer) checkSize(f *file, size int64, mtime time.Time) {
	if size < f.offset || size < int64(f.mLen) {
		// size may come from a stat of the path taken before the reader
		// read further: confirm on the descriptor, under f.mu
		if st, err := f.fd.Stat(); err == nil {
			size, mtime = st.Size(), st.ModTime()
		}
	}
	// a truncation followed by writes up to the same size shows only in
	// the modification time
	changed := size != f.size || !mtime.Equal(f.mtime)
	f.size, f.mtime = size, mtime
	f.sizeA.Store(size)
	if size < f.offset {
		f.truncated = true
	} else if changed {
		// same inode, new size: a copytruncate followed by writes past our
		// offset shows as a changed first bytes
		if !f.checkPrefix(f.readHead(t.headBuf, size)) {
			f.truncated = true
		}
	}
	if f.truncated {
		t.changed = true
	}
	if f.truncated || size > f.offset {
		t.enqueue(f)
	}
}

// open opens a newly matched path and decides where to start reading.
func (t *Tailer) open(p string, now time.Time) {
	fd, err := openNoAtime(p)
	if err != nil {
		return
	}
	st, err := fd.Stat()
	if err != nil || !st.Mode().IsRegular() {
		fd.Close()
		return
	}
	k, _ := statKey(st)
	size := st.Size()
	t.mu.Lock()
	old := t.files[k]
	t.mu.Unlock()
	if old != nil {
		old.mu.Lock()
		if old.fd != nil { // opened meanwhile (another path, same file)
			t.refresh(old, p, st, now)
			old.mu.Unlock()
			fd.Close()
			return
		}
		old.mu.Unlock()
	}
	f := &file{key: k, path: p, seen: now, seenScan: t.scanN, pathScan: t.scanN}
	if err := f.setFD(fd); err != nil {
		fd.Close()
		return
	}
	f.id.Dev, f.id.Ino = k.dev, k.ino
	if t.newAsm != nil {
		f.asm = t.newAsm()
	}
	head := f.readHead(t.headBuf, size)
	resumed := false
	if old != nil {
		old.mu.Lock()
		if old.mLen > 0 && len(head) >= old.mLen && fingerprint(head[:old.mLen]) == old.mFP {
			// the same file: resume after the last line emitted (closed
			// in this run) or acknowledged (known from the checkpoint,
			// where lineStart is the checkpointed offset)
			resumed = true
			f.id, f.idSet, f.mFP, f.mLen = old.id, old.idSet, old.mFP, old.mLen
			f.tr = old.tr
			f.offset, f.lineStart = old.lineStart, old.lineStart
			if size < f.offset { // truncated while we were away
				f.truncated = true
			}
		} else {
			// the inode was reused by another file: the next generation
			// keeps (identity, generation, offset) unique on this host
			f.tr = newTracker(old.tr.gen+1, 0, &t.dirty)
		}
		old.mu.Unlock()
	}
	if !resumed {
		if f.tr == nil {
			f.tr = newTracker(0, 0, &t.dirty)
		}
		if t.initial && t.firstStart && t.cfg.ReadFrom == "tail" {
			f.offset = tailOffset(fd, size)
			f.lineStart = f.offset
			f.tr.acked = f.offset
		}
	}
	f.checkPrefix(head)
	f.size, f.mtime = size, st.ModTime()
	f.sizeA.Store(size)
	f.offsetA.Store(f.offset)
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if tgt, err := filepath.EvalSymlinks(p); err == nil {
			f.target = tgt
		}
	}
	needRead := f.truncated || size > f.offset
	t.changed = true
	if !t.initial && now.Sub(changeTime(st, p)) > t.missGrace && t.watching() {
		// an old file found by a rescan, not announced by an event
		t.missed(p, "create", now)
	}
	t.log.Debug("tail: opened", "path", p, "offset", f.offset, "generation", f.tr.gen, "resumed", resumed)
	t.watchFile(f)
	t.mu.Lock()
	t.files[k] = f
	t.byPath[p] = f
	if f.target != "" {
		t.byPath[f.target] = f
	}
	t.mu.Unlock()
	t.dirty.Store(true)
	t.stats.opened.Add(1)
	if needRead {
		t.enqueue(f)
	}
}

// openNoAtime opens p for reading without access time updates where the
// kernel allows it (the owner of the file, or CAP_FOWNER: an agent running
// as root): with relatime, the first read after each write updates the
// inode, a journalled metadata write per append of a slow file. Else p is
// opened as usual.
func openNoAtime(p string) (*os.File, error) {
	fd, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOATIME, 0)
	if errors.Is(err, syscall.EPERM) {
		return os.Open(p)
	}
	return fd, err
}

// changeTime is the later of the status change times of the file and, for
// a symbolic link, of the link itself: no earlier than when the path
// appeared.
func changeTime(st os.FileInfo, p string) time.Time {
	c := st.Sys().(*syscall.Stat_t).Ctim
	ct := time.Unix(c.Sec, c.Nsec)
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		lc := fi.Sys().(*syscall.Stat_t).Ctim
		if lt := time.Unix(lc.Sec, lc.Nsec); lt.After(ct) {
			ct = lt
		}
	}
	return ct
}

// tailOffset is where read_from: tail starts: just past the last newline
// in the last 64 KiB, else the end.
func tailOffset(fd *os.File, size int64) int64 {
	const look = 64 << 10
	from := size - look
	if from < 0 {
		from = 0
	}
	buf := make([]byte, size-from)
	n, _ := fd.ReadAt(buf, from)
	if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
		return from + int64(i) + 1
	}
	return size
}

// sweep looks at the open files no path matched in this scan (renamed away
// or deleted), releases deleted files held past max_deleted_hold, and
// forgets closed files gone for forget_after.
func (t *Tailer) sweep(now time.Time) {
	t.mu.Lock()
	all := make([]*file, 0, len(t.files))
	for _, f := range t.files {
		all = append(all, f)
	}
	t.mu.Unlock()
	var forget []key
	for _, f := range all {
		f.mu.Lock()
		if f.fd == nil {
			_, out := f.tr.state()
			if out == 0 && now.Sub(f.seen) > t.cfg.ForgetAfter {
				forget = append(forget, f.key)
			}
			f.mu.Unlock()
			continue
		}
		if !f.deletedAt.IsZero() || !f.rotatedAt.IsZero() {
			t.changed = true // not finished yet: rotate_wait, max_deleted_hold
		}
		if f.seenScan == t.scanN {
			if f.pathScan != t.scanN && f.altPath != "" { // renamed, still matched
				t.renamed(f, f.altPath)
			}
			f.mu.Unlock()
			continue
		}
		st, err := f.fd.Stat()
		if err != nil {
			f.mu.Unlock()
			continue
		}
		_, nlink := statKey(st)
		t.changed = true
		if nlink == 0 {
			if f.deletedAt.IsZero() {
				f.deletedAt = now
				t.stats.rotations.Add(1)
				t.log.Debug("tail: deleted", "path", f.path)
			}
		} else if f.rotatedAt.IsZero() {
			f.rotatedAt = now
			t.stats.rotations.Add(1)
			t.log.Debug("tail: renamed away", "path", f.path)
		}
		t.checkSize(f, st.Size(), st.ModTime())
		switch {
		case !f.deletedAt.IsZero() && now.Sub(f.deletedAt) > t.cfg.MaxDeletedHold:
			lost := f.size - f.lineStart
			if lost > 0 {
				t.stats.lostBytes.Add(uint64(lost))
			}
			t.log.Error("tail: deleted file held past max_deleted_hold released; its unread bytes are lost",
				"path", f.path, "lost_bytes", lost, "held", now.Sub(f.deletedAt).Round(time.Second))
			t.closeLocked(f)
		case !f.deletedAt.IsZero(), !f.rotatedAt.IsZero() && now.Sub(f.rotatedAt) >= t.cfg.RotateWait:
			t.enqueue(f) // the reader finishes and closes it at EOF
		}
		f.mu.Unlock()
	}
	if len(forget) > 0 {
		t.mu.Lock()
		for _, k := range forget {
			if f := t.files[k]; f != nil && f.fd == nil {
				delete(t.files, k)
			}
		}
		t.mu.Unlock()
		t.dirty.Store(true)
	}
}

// renamed moves f to its new matched path. Call with f.mu held.
func (t *Tailer) renamed(f *file, p string) {
	t.mu.Lock()
	if t.byPath[f.path] == f {
		delete(t.byPath, f.path)
	}
	t.byPath[p] = f
	t.mu.Unlock()
	t.log.Debug("tail: renamed", "from", f.path, "to", p)
	f.path = p
	f.pathScan = t.scanN
	t.changed = true
	t.stats.rotations.Add(1)
	t.watchFile(f)
}

// ---- checkpoints ----

// persist writes the acknowledged offsets of every known file.
func (t *Tailer) persist() {
	if t.ckptPath == "" {
		return
	}
	t.ckptMu.Lock()
	defer t.ckptMu.Unlock()
	t.dirty.Store(false)
	t.mu.Lock()
	all := t.ckptAll[:0] // reused under ckptMu: no garbage per write
	for _, f := range t.files {
		all = append(all, f)
	}
	t.mu.Unlock()
	doc := checkpointDoc{Input: t.name, Files: t.ckptFiles[:0]}
	for _, f := range all {
		f.mu.Lock()
		tr := f.tr
		c := checkpoint{
			Dev: f.key.dev, Ino: f.key.ino, FP: f.id.Fingerprint,
			MatchFP: f.mFP, MatchLen: f.mLen, Gen: tr.gen,
			Path: f.path, Seen: f.seen.Unix(),
		}
		f.mu.Unlock()
		c.Offset, _ = tr.state()
		doc.Files = append(doc.Files, c)
	}
	clear(all)
	t.ckptAll, t.ckptFiles = all[:0], doc.Files[:0]
	var err error
	t.ckptBuf, err = saveCheckpoints(t.ckptPath, &doc, t.ckptBuf)
	if err != nil {
		t.dirty.Store(true)
		t.stats.checkpointErrors.Add(1)
		t.log.Error("tail: writing the checkpoint failed", "path", t.ckptPath, "error", err)
		return
	}
	t.stats.checkpoints.Add(1)
}
