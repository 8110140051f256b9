// Package throttle is the filter that lets at most `limit` records per
// `interval` through, per value of `key` (one budget for all records when
// there is no key). The excess is dropped and counted.
//
// Windows are fixed and aligned on the wall clock (interval 1s: each second
// starts a new budget for every key); the clock is the processing time, not
// the records' time. State is one counter per key seen in the current
// window, forgotten when the window ends, so memory follows the number of
// distinct keys per interval.
package throttle

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/expression"
	"github.com/sidelog/sidelog/filter"
	"github.com/sidelog/sidelog/filter/internal/keystr"
	"github.com/sidelog/sidelog/plugins"
)

// Config is the throttle filter's configuration.
type Config struct {
	// Limit is the number of records let through per interval and key.
	Limit int `yaml:"limit"`
	// Interval is the window length (default 1s).
	Interval time.Duration `yaml:"interval"`
	// Key is an optional expression: one budget per value.
	Key string `yaml:"key"`
}

// Plugin is the registry entry.
var Plugin = plugins.Filter{
	Config: func() any { return &Config{Interval: time.Second} },
	New:    func(cfg any, _ plugins.FilterEnv) (filter.Filter, error) { return New(cfg.(*Config)) },
}

func init() { plugins.RegisterFilter("throttle", Plugin) }

// Validate checks the numbers and compiles the key.
func (c *Config) Validate() error {
	_, err := New(c)
	return err
}

// Throttle is the built filter.
type Throttle struct {
	limit    int64
	interval int64 // ns
	key      *expression.Program
	now      func() time.Time

	mu     sync.Mutex
	window int64 // index of the current window
	counts map[string]int64
	// sized is the most keys counts has held since it was made: a Go map
	// keeps its buckets when cleared, so after a burst of distinct keys
	// the map is made again, small, once a window needs far fewer.
	sized int

	throttled atomic.Int64
	errors    atomic.Int64
}

// New builds the filter; errors are *plugins.KeyError (joined).
func New(c *Config) (*Throttle, error) {
	var errs []error
	if c.Limit < 1 {
		errs = append(errs, &plugins.KeyError{Key: "limit", Err: errors.New("must be at least 1 (records per interval and key)")})
	}
	if c.Interval <= 0 {
		errs = append(errs, &plugins.KeyError{Key: "interval", Err: errors.New("must be positive, e.g. 1s")})
	}
	t := &Throttle{limit: int64(c.Limit), interval: int64(c.Interval), now: time.Now, counts: map[string]int64{}}
	if c.Key != "" {
		p, err := expression.Compile(c.Key, expression.Any)
		if err != nil {
			errs = append(errs, &plugins.KeyError{Key: "key", Err: err})
		}
		t.key = p
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// shrinkAbove: a map for fewer keys is only cleared, never made again.
const shrinkAbove = 1024

// Apply lets e through while its key's budget lasts.
func (t *Throttle) Apply(e *event.Event) bool {
	k := ""
	if t.key != nil {
		v, err := t.key.Eval(e)
		if err != nil {
			t.errors.Add(1)
			return true
		}
		k = keystr.String(v)
	}
	w := t.now().UnixNano() / t.interval
	t.mu.Lock()
	if w != t.window {
		t.window = w
		n := len(t.counts)
		t.sized = max(t.sized, n)
		if t.sized > shrinkAbove && n < t.sized/4 {
			t.counts = make(map[string]int64, n)
			t.sized = n
		} else {
			clear(t.counts)
		}
	}
	n, seen := t.counts[k]
	if !seen {
		k = strings.Clone(k) // the value may alias a read buffer
	}
	if n >= t.limit {
		t.mu.Unlock()
		t.throttled.Add(1)
		return false
	}
	t.counts[k] = n + 1
	t.mu.Unlock()
	return true
}

// Keys returns the fields the key expression reads.
func (t *Throttle) Keys() ([]string, bool) {
	if t.key == nil {
		return nil, false
	}
	return t.key.Keys()
}

// Counters implements filter.Counter: "throttled" records dropped over the
// limit, "errors" records let through because the key failed at run time.
func (t *Throttle) Counters() []filter.Count {
	return []filter.Count{
		{Name: "throttled", Value: t.throttled.Load()},
		{Name: "errors", Value: t.errors.Load()},
	}
}
