// Package drop is the filter that drops every record it sees: with `when`,
// the records for which `when` is true.
package drop

import (
	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/filter"
	"github.com/sidelog/sidelog/plugins"
)

// Config has no keys: `type` and `when` belong to the engine.
type Config struct{}

// Plugin is the registry entry.
var Plugin = plugins.Filter{
	Config: func() any { return &Config{} },
	New:    func(any, plugins.FilterEnv) (filter.Filter, error) { return Drop{}, nil },
}

func init() { plugins.RegisterFilter("drop", Plugin) }

// Drop drops every record handed to it.
type Drop struct{}

// Apply returns false: the engine releases the record.
func (Drop) Apply(*event.Event) bool { return false }

// Keys: drop reads no field.
func (Drop) Keys() ([]string, bool) { return nil, false }
