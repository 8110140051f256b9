// Package output defines the last stage: destinations for records.
//
// An output works in two steps. Encode runs in the pipeline and turns an
// event into the bytes that the output's buffer stores (the buffer may be on
// disk, so everything the output needs later, such as the index name or the
// document id, must be in these bytes). Write runs in the output's delivery
// loop and sends a batch of such records.
package output

import (
	"context"

	"github.com/sidelog/sidelog/event"
)

// Output sends encoded records somewhere.
type Output interface {
	// Encode appends the buffered form of e to dst and returns it. It must
	// not keep e or dst.
	Encode(dst []byte, e *event.Event) ([]byte, error)
	// Write delivers a batch of records produced by Encode. It returns nil
	// when all were delivered, a *BatchError when some failed, or another
	// error (classified with Permanent/Throttled, else retryable) when the
	// whole batch failed. It must not keep batch after it returns.
	Write(ctx context.Context, batch [][]byte) error
	// Close releases resources. Called once, after the last Write.
	Close(ctx context.Context) error
}

// DefaultBufferer is implemented by outputs whose buffer should default to
// disk (network outputs) rather than memory.
type DefaultBufferer interface {
	DefaultBuffer() string
}

// Count is one of an output's own counters (see Counter).
type Count struct {
	// Name is the counter's kind: possible_duplicates, too_old_redated, ...
	Name  string
	Value int64
	// Dropped marks records given up on purpose (a `drop` policy): they are
	// also counted in sidelog_dropped_records_total with Name as the reason.
	Dropped bool
}

// Counter is implemented by outputs that count what the engine cannot see
// (requests whose outcome was unknown, records re-dated or dropped by a
// policy). The engine exports them as sidelog_output_events_total{output,
// kind} and in /status (outputs.<name>.counters). Counts only grow.
type Counter interface {
	Counts() []Count
}
