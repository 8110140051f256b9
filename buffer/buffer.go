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
	Corrupt       int64 // records skipped by recovery
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
