// Package keep is the filter that keeps only the records for which its
// `when` is true and drops the others. It evaluates `when` itself
// (filter.WhenTaker): `when` is required.
package keep

import (
	"errors"
	"sync/atomic"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/expression"
	"github.com/sidelog/sidelog/filter"
	"github.com/sidelog/sidelog/plugins"
)

// Config has no keys: `type` and `when` belong to the engine.
type Config struct{}

// Plugin is the registry entry.
var Plugin = plugins.Filter{
	Config: func() any { return &Config{} },
	New:    func(any, plugins.FilterEnv) (filter.Filter, error) { return &Keep{}, nil },
}

func init() { plugins.RegisterFilter("keep", Plugin) }

// Keep drops the records for which its condition is false.
type Keep struct {
	when   *expression.Program
	errors atomic.Int64
}

// ErrNoWhen: keep without a condition would keep everything.
var ErrNoWhen = errors.New("keep needs a `when` condition: records for which it is false are dropped")

// TakeWhen implements filter.WhenTaker.
func (k *Keep) TakeWhen(when *expression.Program) error {
	if when == nil {
		return &plugins.KeyError{Key: "when", Err: ErrNoWhen}
	}
	k.when = when
	return nil
}

// Apply keeps e when the condition is true. A run-time error keeps the
// record (unchanged) and counts the error.
func (k *Keep) Apply(e *event.Event) bool {
	if k.when == nil {
		return true
	}
	ok, err := k.when.Bool(e)
	if err != nil {
		k.errors.Add(1)
		return true
	}
	return ok
}

// Keys returns the fields the condition reads.
func (k *Keep) Keys() ([]string, bool) {
	if k.when == nil {
		return nil, false
	}
	return k.when.Keys()
}

// Counters implements filter.Counter.
func (k *Keep) Counters() []filter.Count {
	return []filter.Count{{Name: "errors", Value: k.errors.Load()}}
}
