// Package input defines the first stage of the pipeline: sources of lines.
package input

import (
	"context"
	"log/slog"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/parser"
)

// Emit hands a batch of events to the pipeline. It blocks while the pipeline
// is full (backpressure) and takes ownership of the batch and its events. It
// returns an error only when the pipeline is aborting; the input then stops.
type Emit func(batch []*event.Event) error

// Input reads lines and emits them as events. Each event carries its Input
// name, Path, Pos and an Ack: the input advances its checkpoint only when the
// Ack of every event up to a position has been released.
type Input interface {
	// Run reads until ctx is cancelled, then stops discovering new files,
	// reads the open files to their current end, emits what it read and
	// returns. With exit_on_eof it returns by itself once every file is
	// read to its end and every event it emitted is acknowledged. Every
	// wait for acknowledgements also ends when Env.ShutdownDeadline is
	// closed: the pipeline aborts then, and emit fails.
	Run(ctx context.Context, emit Emit) error
}

// Env is what the engine gives an input when it builds one.
type Env struct {
	// Name is the input's configured name (meta.input).
	Name string
	// DataDir is the agent's data directory (checkpoints live below it).
	DataDir string
	// NewAssembler returns a fresh line assembler for one file (or nil:
	// every line is one event). Assemblers join container partial lines
	// and multiline groups.
	NewAssembler func() parser.Assembler
	// ExitOnEOF is the CLI override of exit_on_eof.
	ExitOnEOF bool
	// Logger is the agent's logger, already tagged with the input.
	Logger *slog.Logger
	// ShutdownDeadline is closed by the pipeline when its shutdown
	// deadline (shutdown_timeout) passes. After its ctx is cancelled, an
	// input waits for the acknowledgements of what it emitted (the
	// buffers drain meanwhile) until they all came back or this is
	// closed, then saves its position and returns. Nil outside a
	// pipeline: the input bounds the wait itself.
	ShutdownDeadline <-chan struct{}
}

// Recycler is implemented by inputs that reuse event memory. The engine
// calls Recycle with every batch the input emitted once it has finished with
// it: parsed, filtered, routed and encoded into the buffers, which keep
// only the records' own bytes and acknowledgement handles, never the
// events. After Recycle nothing of the engine touches the batch slice, its
// events, their Raw bytes or values stored in their Fields (the tail input
// gathers its next batch in the slice).
type Recycler interface {
	Recycle(batch []*event.Event)
}
