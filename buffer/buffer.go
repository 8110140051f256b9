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
	// Data is the output's encoding of the event. The buffer takes ownership.
	Data []byte
	// Ack is released when the buffer has durably taken the record (disk)
	// or when the record was delivered (memory).
	Ack event.Releaser
}

// Limits bound one batch: whichever of MaxEvents, MaxBytes or Timeout comes
// first ends it.
type Limits struct {
	MaxEvents int
	MaxBytes  int
	Timeout   time.Duration
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
