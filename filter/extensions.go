package filter

import (
	"context"

	"github.com/sidelog/sidelog/expression"
)

// Optional interfaces a filter may implement besides Filter. The engine
// checks for them once, when it builds the chain.

// WhenTaker is implemented by filters whose `when` is part of their meaning:
// keep drops the records for which `when` is false, and redact fails closed
// (redacts) when `when` fails at run time. The engine hands such a filter
// its compiled `when` (nil when the entry has none) once, after New, and
// from then on calls Apply for every record without evaluating `when`
// itself. An error (keep without `when`) is a configuration error of the
// entry.
type WhenTaker interface {
	TakeWhen(when *expression.Program) error
}

// Counter is implemented by filters that count what they do beyond passing
// and dropping, e.g. "errors" (run-time expression errors; the record went
// on unchanged), "throttled", "sampled_out". Counts only grow. The engine
// may export them as sidelog_filter_events_total{filter=<id>,kind=<name>}.
type Counter interface {
	Counters() []Count
}

// Count is one named counter of a filter.
type Count struct {
	Name  string
	Value int64
}

// Steerer is implemented by a filter that knows, before a line is parsed,
// whether the lines of the file at path are wanted at all and which of the
// config's named `parsers:` reads them ("" for the input's own parser): the
// kubernetes filter, from a pod's sidelog.io/exclude and sidelog.io/parser
// annotations. The engine asks the first steering filter of the chain for
// each record's path, in the input's worker, before parsing; an excluded
// record is released at once and counted. Steer may block for a bounded
// time (a new pod's metadata) and is called from several goroutines.
type Steerer interface {
	Steer(path string) (exclude bool, parser string)
}

// Runner is implemented by filters that keep something up to date while the
// pipeline runs (the kubernetes filter's informers). The engine calls Run in
// its own goroutine when the pipeline starts and cancels ctx when it ends;
// nothing runs at load or validate.
type Runner interface {
	Run(ctx context.Context)
}
