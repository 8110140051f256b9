package filter

import "github.com/sidelog/sidelog/expression"

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
