// Package filter defines the stage that drops and transforms records.
package filter

import "github.com/sidelog/sidelog/event"

// Filter looks at one event and may change it (calling e.Mutable() first).
// Apply returns false to drop the event; the engine then releases it. The
// engine evaluates the filter's `when` expression before calling Apply: a
// filter only sees events for which `when` is true (or that have no `when`).
// Apply is called from one goroutine per input, so filters keeping state
// across events (sample, throttle) must be safe for concurrent use.
type Filter interface {
	Apply(e *event.Event) bool
}
