// Package tail is the tail input: it follows files matched by globs through
// rotations, truncations and restarts, and emits every line exactly once as
// long as the checkpoint and the acknowledgements are honoured (at least once
// across a crash). See docs/input-tail.md for the design.
package tail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/input"
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
	ckpt       *ckptStore // nil without data_dir
	firstStart bool       // no checkpoint existed

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
	fastUntil time.Time
	missGrace time.Duration
	pollReset atomic.Bool // an fsnotify error: back to poll_interval
	seenSet   map[string]struct{}
	nOpen     atomic.Int64 // descriptors of log files held (max_open_files)
	peakOpen  atomic.Int64 // the most held at once
	idleScan  uint64       // the scan idleCands were gathered in (scanner only)
	idleCands []idleCand   // idle open files, oldest first (scanner only)
	// idleByPath: the files closed as inactive, by matched path (under
	// mu): a write event for one reopens it alone, without a full rescan.
	idleByPath map[string]*file
	touchMu    sync.Mutex
	touched    map[string]struct{} // idle files written since the last scan (touchMu)
	fullScan   atomic.Bool         // an event (create, remove, rename...) wants a full rescan
	// deferred: paths whose open max_open_files put off (scanner only): not
	// a creation fsnotify missed when they are opened later
	deferred   map[string]struct{}
	headBuf    []byte // scanner's fingerprint buffer
	readerHead []byte // reader's fingerprint buffer

	dirty        atomic.Bool
	ackSig       chan struct{} // an acknowledgement moved an offset (persister)
	shutdownDL   <-chan struct{}
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
	// pack is the open pack small reads are copied into (see recycler);
	// lines and asmOut are split's and seal's event lists, which send
	// copies out. Reader only.
	pack   *block
	lines  []*event.Event
	asmOut []*event.Event

	stats    counters
	warn     warner // loss warnings, rate-limited per file and reason
	openWarn warner // open failure warnings, rate-limited per file
	// openFile opens a matched file (openNoAtime; tests inject failures).
	openFile func(path string) (*os.File, error)
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
		idleByPath:   map[string]*file{},
		qsig:         make(chan struct{}, 1),
		trigger:      make(chan struct{}, 1),
		inflightZero: make(chan struct{}, 1),
		ackSig:       make(chan struct{}, 1),
		shutdownDL:   env.ShutdownDeadline,
		seenSet:      map[string]struct{}{},
		headBuf:      make([]byte, cfg.FingerprintBytes),
		readerHead:   make([]byte, cfg.FingerprintBytes),
		watched:      map[string]bool{},
		unwatched:    map[string]bool{},
		deadlines:    map[*file]time.Time{},
		missGrace:    defaultMissGrace,
		openFile:     openNoAtime,
	}
	t.recycle.stale = staleBytes(int64(cfg.ReadBufferBytes))
	for i, p := range t.cfg.Paths {
		t.cfg.Paths[i] = filepath.Clean(p)
	}
	if env.DataDir == "" {
		t.firstStart = true
		log.Warn("tail: no data_dir: checkpoints are not kept, files are read again at each start")
		return t, nil
	}
	t.ckptPath = checkpointPath(env.DataDir, env.Name)
	st, err := readCheckpoints(t.ckptPath)
	switch {
	case errors.Is(err, errCorrupt):
		stamp := time.Now().Unix()
		var moved []string
		for _, p := range checkpointFiles(t.ckptPath) {
			aside := fmt.Sprintf("%s.corrupt-%d", p, stamp)
			if os.Rename(p, aside) == nil {
				moved = append(moved, aside)
			}
		}
		log.Error("tail: checkpoint is corrupt, moved aside; known files are read again from their start", "error", err, "moved_to", moved)
		st = ckptState{found: true}
	case err != nil:
		return nil, fmt.Errorf("tail: %w", err)
	case len(st.torn) > 0:
		log.Info("tail: a checkpoint slot holds an interrupted write (a crash); the complete one is used", "torn", st.torn, "used", st.from)
	}
	t.ckpt = newCkptStore(t.ckptPath, st)
	doc, found := st.doc, st.found
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
			size: c.Size, target: c.Target,
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
	if t.ckpt != nil {
		defer t.ckpt.close() // after the persister and the last persist
	}
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
	pctx, stopPersist := context.WithCancel(context.Background())
	persisted := make(chan struct{})
	go func() { defer close(persisted); t.persister(pctx) }()
	defer func() { stopPersist(); <-persisted }()
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
	t.waitDrained()
	stopPersist()
	<-persisted
	t.persist()
	return err
}

// waitDrained waits, on a graceful stop, for the acknowledgements of every
// batch emitted: until the pipeline's shutdown deadline when it gives one
// (its buffers drain up to shutdown_timeout, and the acknowledgements that
// arrive meanwhile must reach the final checkpoint), else up to
// drain_timeout.
func (t *Tailer) waitDrained() {
	if t.shutdownDL == nil {
		t.waitInflight(t.cfg.DrainTimeout)
		return
	}
	for t.inflight.Load() > 0 {
		select {
		case <-t.inflightZero:
		case <-t.shutdownDL:
			return
		}
	}
}

// runToEOF is exit_on_eof: read every matched file to its end, emit the
// held partial lines, wait for every acknowledgement, persist.
func (t *Tailer) runToEOF(ctx context.Context) error {
	err := t.drain(true)
	if err == nil {
		// One waiter, no goroutine: a helper waiting for every ack stayed
		// blocked after a cancel (and could take the zero signal that
		// waitDrained then waited for).
	wait:
		for t.inflight.Load() > 0 {
			select {
			case <-t.inflightZero:
			case <-t.shutdownDL: // the pipeline aborts (nil: never)
				break wait
			case <-ctx.Done():
				t.waitDrained()
				break wait
			}
		}
	}
	t.persist()
	return err
}

// openFiles returns the open files.
func (t *Tailer) openFiles() []*file {
	t.mu.Lock()
	all := make([]*file, 0, len(t.files))
	for _, f := range t.files {
		all = append(all, f)
	}
	t.mu.Unlock()
	// f.mu after t.mu is released: the reader takes t.mu with f.mu held
	// (closeLocked)
	out := all[:0]
	for _, f := range all {
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
		out = t.asmFlush(f, out)
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

func (t *Tailer) batchDone() {
	select {
	case t.ackSig <- struct{}{}:
	default:
	}
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
