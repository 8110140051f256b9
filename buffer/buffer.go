// Package buffer holds each output's records between the pipeline and the
// output's delivery loop: in memory, or on disk where it survives crashes.
//
// Acknowledgement: every record carries the Releaser of the event it was
// encoded from. A disk buffer releases it once the record is durable (after
// the fsync that covers it); a memory buffer releases it once the batch
// holding it is acknowledged by the delivery loop. Inputs advance their
// checkpoints only on those releases.
package buffer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sidelog/sidelog/config/units"
	"github.com/sidelog/sidelog/event"
)

// Record is one encoded event.
type Record struct {
	// Data is the output's encoding of the event. The buffer takes
	// ownership (until it releases Arena, if any).
	Data []byte
	// Ack is released when the buffer has durably taken the record (disk)
	// or when the record was delivered (memory).
	Ack event.Releaser
	// Arena, when not nil, is the memory Data points into, shared with the
	// other records of its batch: the memory buffer releases the record's
	// reference once the record is delivered (or dropped), the disk buffer
	// once the record left its memory cache, so that the memory is reused;
	// other buffers may ignore it (see Arena).
	Arena *Arena
}

// Limits bound one batch. Read takes a batch at once when a full one waits
// (MaxEvents or MaxBytes) or at least MinEvents records wait; otherwise it
// waits for more until the oldest unread record has waited Linger (counted
// from its arrival in the buffer, not from the call to Read), Timeout being
// the upper bound of that wait. The delivery loop calls Read only when a
// send slot is free, so a batch leaves as soon as the output can take it
// and records lingered a moment, and under load (every slot busy) records
// pile up into full batches by themselves ("natural batching").
type Limits struct {
	MaxEvents int
	MaxBytes  int
	Timeout   time.Duration
	// MinEvents: a batch is taken at once when this many records wait
	// (0: only a full batch is).
	MinEvents int
	// Linger bounds the wait of the oldest record for a fuller batch (0:
	// Timeout alone does).
	Linger time.Duration
}

// maxWait is how long the oldest unread record may wait for a fuller batch.
func (l Limits) maxWait() time.Duration {
	if l.Linger > 0 && l.Linger < l.Timeout {
		return l.Linger
	}
	return l.Timeout
}

// ready reports whether n records waiting are enough to take a batch at
// once by MaxEvents or MinEvents (bytes are the caller's).
func (l Limits) ready(n int64) bool {
	return (l.MaxEvents > 0 && n >= int64(l.MaxEvents)) || (l.MinEvents > 0 && n >= int64(l.MinEvents))
}

// arrivals remembers when records arrived, by sequence number, so that Read
// knows how long the oldest unread record has waited. One entry per Write
// call: [start, end) arrived at t.
type arrivals struct {
	s []arrival
	h int // s[:h] are past
}

type arrival struct {
	start, end uint64
	t          time.Time
}

func (a *arrivals) add(start, end uint64, t time.Time) {
	if end <= start {
		return
	}
	if n := len(a.s); n > a.h && a.s[n-1].end == start && a.s[n-1].t.Equal(t) {
		a.s[n-1].end = end
		return
	}
	a.s = append(a.s, arrival{start, end, t})
}

// at returns the arrival time of record seq and forgets the records before
// it; the zero time when unknown (records recovered from disk at start-up:
// they count as long waiting).
func (a *arrivals) at(seq uint64) time.Time {
	for a.h < len(a.s) && a.s[a.h].end <= seq {
		a.h++
	}
	if a.h == len(a.s) {
		a.s, a.h = a.s[:0], 0
		return time.Time{}
	}
	if a.h > 256 && a.h > len(a.s)/2 {
		n := copy(a.s, a.s[a.h:])
		a.s, a.h = a.s[:n], 0
	}
	if r := a.s[a.h]; r.start <= seq {
		return r.t
	}
	return time.Time{}
}

// remaining is how much longer Read may wait for a fuller batch when the
// oldest unread record arrived at arrived (≤ 0: take the batch now).
func (l Limits) remaining(arrived, now time.Time) time.Duration {
	if arrived.IsZero() {
		return 0
	}
	return l.maxWait() - now.Sub(arrived)
}

// Batch is a group of records handed to the delivery loop. Records are in
// buffer order. The batch belongs to the caller of Read until it passes it to
// Ack.
type Batch struct {
	Records [][]byte
	// Seq orders batches; buffers use it to track acknowledgements.
	Seq uint64
	// impl is the implementation's bookkeeping.
	impl any
}

// Stats is a snapshot of a buffer's state.
type Stats struct {
	Records       int64
	Bytes         int64
	OldestUnacked time.Time
	Dropped       int64 // drop_newest
	Corrupt       int64 // unacknowledged records lost in damaged frames (recovery)

	// Disk buffers only.
	CorruptBytes int64 // bytes of damaged frames skipped by recovery
	NoSpace      int64 // writes that failed with ENOSPC/EDQUOT (retried)
	IOErrors     int64 // failed writes or fsyncs (retried)
	Stalled      bool  // the last write failed: writers are paused until it succeeds
	Segments     int   // segment files
	InFlight     int   // batches handed out and not acknowledged
}

// ErrDrained is returned by Read once the buffer is sealed and empty.
var ErrDrained = errors.New("buffer: sealed and drained")

// ErrSealed is returned by Write after Seal.
var ErrSealed = errors.New("buffer: sealed")

// Buffer is one output's queue of records.
type Buffer interface {
	// Write appends records in order. When the buffer is full it blocks
	// (when_full: block) until there is room or ctx is done, or drops the
	// newest records and counts them (drop_newest, releasing their acks).
	// It keeps no reference to recs itself (the caller reuses the array),
	// only to what the records hold.
	Write(ctx context.Context, recs []Record) error
	// Read returns the next batch of records not yet handed out. It waits
	// for records; once it has one, it waits at most l.Timeout for more.
	// After Seal, it returns ErrDrained when nothing is left.
	Read(ctx context.Context, l Limits) (*Batch, error)
	// Ack says the batch is done with (delivered or dead-lettered). Batches
	// may be acknowledged out of order.
	Ack(b *Batch) error
	// Seal refuses further writes and lets Read drain.
	Seal()
	// Stats reports sizes and counters.
	Stats() Stats
	// Close releases resources; unacknowledged records of a disk buffer stay
	// on disk for the next start.
	Close() error
}

// Config is the `buffer:` block of an output.
type Config struct {
	Type        string     `yaml:"type"`        // disk | memory
	MaxBytes    units.Size `yaml:"max_bytes"`   // bound on buffered bytes
	WhenFull    string     `yaml:"when_full"`   // block | drop_newest
	Compression string     `yaml:"compression"` // none | zstd (disk only)
}

// Validate checks the values that the types alone cannot.
func (c *Config) Validate() error {
	var errs []error
	switch c.Type {
	case "", "disk", "memory":
	default:
		errs = append(errs, fmt.Errorf("type: must be disk or memory, not %q", c.Type))
	}
	switch c.WhenFull {
	case "", "block", "drop_newest":
	default:
		errs = append(errs, fmt.Errorf("when_full: must be block or drop_newest, not %q", c.WhenFull))
	}
	switch c.Compression {
	case "", "none", "zstd":
	default:
		errs = append(errs, fmt.Errorf("compression: must be none or zstd, not %q", c.Compression))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("max_bytes: must not be negative"))
	}
	return errors.Join(errs...)
}

// New opens the buffer of one output: a Disk under dir (the engine passes
// data_dir/buffer/<output>) or a Memory, by cfg.Type, else by defaultType
// ("disk" for network outputs, "memory" for stdout and file).
func New(dir string, cfg Config, defaultType string, opts ...Option) (Buffer, error) {
	t := cfg.Type
	if t == "" {
		t = defaultType
	}
	switch t {
	case "disk":
		return Open(dir, cfg, opts...)
	case "memory", "":
		return NewMemory(int64(cfg.MaxBytes), cfg.WhenFull), nil
	}
	return nil, fmt.Errorf("buffer: unknown type %q (disk | memory)", t)
}

// Orphans lists the buffers under dataDir/buffer whose output is not in
// configured: they are kept until dropped, and reported at start-up.
func Orphans(dataDir string, configured []string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(dataDir, "buffer"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	known := make(map[string]bool, len(configured))
	for _, n := range configured {
		known[n] = true
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && !known[e.Name()] {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Drop removes the buffer of output name under dataDir (for `sidelog buffer
// drop --output NAME`, on a stopped agent or for an orphan).
func Drop(dataDir, name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
		return fmt.Errorf("buffer: invalid output name %q", name)
	}
	dir := filepath.Join(dataDir, "buffer", name)
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("buffer: %w", err)
	}
	return os.RemoveAll(dir)
}
