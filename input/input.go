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
	// wait for acknowledgements also ends when Env.Abort is closed.
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
	// Abort is closed when the pipeline gives up on a graceful stop
	// (shutdown_timeout passed): from then on emit fails and no event
	// still held by the pipeline will be acknowledged, so an input that
	// waits for its acknowledgements stops waiting, saves what was
	// acknowledged and returns at once. Nil (never closed) outside the
	// engine.
	Abort <-chan struct{}
}

// Recycler is implemented by inputs that reuse event memory. The engine
// calls Recycle with every batch the input emitted once it has finished with
// it: parsed, filtered, routed and encoded into the buffers, which keep
// only the records' own bytes and acknowledgement handles, never the
// events. After Recycle nothing of the engine touches the batch's events,
// their Raw bytes or values stored in their Fields.
type Recycler interface {
	Recycle(batch []*event.Event)
}
