// Package sample is the filter that keeps 1 record in `rate`.
//
// Without `key`, it keeps the 1st, (rate+1)th, (2·rate+1)th... record it sees
// (per filter, across inputs). With `key`, an expression, the decision is a
// hash of the key's value: every record with the same key value is kept, or
// every one dropped, on every host and after every restart (consistent
// sampling, e.g. by trace id), and about 1 key value in `rate` is kept. A
// record whose key is null or missing is sampled by the counter; a record
// whose key fails at run time is kept and the error counted.
package sample

import (
	"errors"
	"sync/atomic"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/expression"
	"github.com/sidelog/sidelog/filter"
	"github.com/sidelog/sidelog/filter/internal/keystr"
	"github.com/sidelog/sidelog/plugins"
)

// Config is the sample filter's configuration.
type Config struct {
	// Rate: keep 1 record in Rate (1 keeps everything).
	Rate int `yaml:"rate"`
	// Key is an optional expression; see the package comment.
	Key string `yaml:"key"`
}

// Plugin is the registry entry.
var Plugin = plugins.Filter{
	Config: func() any { return &Config{} },
	New:    func(cfg any, _ plugins.FilterEnv) (filter.Filter, error) { return New(cfg.(*Config)) },
}

func init() { plugins.RegisterFilter("sample", Plugin) }

// Validate checks the rate and compiles the key.
func (c *Config) Validate() error {
	_, err := New(c)
	return err
}

// Sample is the built filter.
type Sample struct {
	rate    uint64
	key     *expression.Program
	n       atomic.Uint64
	dropped atomic.Int64
	errors  atomic.Int64
}

// New builds the filter; errors are *plugins.KeyError (joined).
func New(c *Config) (*Sample, error) {
	var errs []error
	if c.Rate < 1 {
		errs = append(errs, &plugins.KeyError{Key: "rate", Err: errors.New("must be at least 1 (keep 1 record in rate)")})
	}
	s := &Sample{rate: uint64(max(c.Rate, 1))}
	if c.Key != "" {
		p, err := expression.Compile(c.Key, expression.Any)
		if err != nil {
			errs = append(errs, &plugins.KeyError{Key: "key", Err: err})
		}
		s.key = p
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// Apply keeps 1 record in rate.
func (s *Sample) Apply(e *event.Event) bool {
	if s.rate == 1 {
		return true
	}
	keep := false
	if s.key != nil {
		v, err := s.key.Eval(e)
		switch {
		case err != nil:
			s.errors.Add(1)
			return true
		case v != nil:
			keep = keystr.Hash(keystr.String(v))%s.rate == 0
			if !keep {
				s.dropped.Add(1)
			}
			return keep
		}
	}
	keep = (s.n.Add(1)-1)%s.rate == 0
	if !keep {
		s.dropped.Add(1)
	}
	return keep
}

// Keys returns the fields the key expression reads.
func (s *Sample) Keys() ([]string, bool) {
	if s.key == nil {
		return nil, false
	}
	return s.key.Keys()
}

// Counters implements filter.Counter.
func (s *Sample) Counters() []filter.Count {
	return []filter.Count{
		{Name: "sampled_out", Value: s.dropped.Load()},
		{Name: "errors", Value: s.errors.Load()},
	}
}
