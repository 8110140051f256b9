package throttle

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/filter/internal/example"
	"github.com/sidelog/sidelog/plugins"
)

func reg() *plugins.Registry { return example.Registry(map[string]plugins.Filter{"throttle": Plugin}) }

// clock is a manual clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestExample(t *testing.T) {
	cfg, err := example.ParseFile("example.yaml", reg())
	if err != nil {
		t.Fatal(err)
	}
	chain, err := example.Build(cfg, reg())
	if err != nil {
		t.Fatal(err)
	}
	th := chain[0].Filter.(*Throttle)
	c := &clock{time.Unix(1000, 0)}
	th.now = c.now
	pass := map[string]int{}
	for i := 0; i < 2500; i++ {
		for _, svc := range []string{"checkout", "cart"} {
			if chain.Apply(&event.Event{Fields: map[string]any{"service": svc}}) {
				pass[svc]++
			}
		}
	}
	if pass["checkout"] != 1000 || pass["cart"] != 1000 {
		t.Fatalf("passed %v, want 1000 each", pass)
	}
	if got := example.Count(th, "throttled"); got != 3000 {
		t.Fatalf("throttled = %d, want 3000", got)
	}
	c.t = c.t.Add(time.Second) // next window: a fresh budget
	if !chain.Apply(&event.Event{Fields: map[string]any{"service": "checkout"}}) {
		t.Fatal("new window did not reset the budget")
	}
}

func TestTable(t *testing.T) {
	t0 := time.Unix(1000, 0)
	type step struct {
		at     time.Duration // since t0
		fields map[string]any
		pass   bool
	}
	a := map[string]any{"k": "a"}
	b := map[string]any{"k": "b"}
	cases := []struct {
		name   string
		cfg    Config
		steps  []step
		errors int64
	}{
		{"no key: one budget", Config{Limit: 2, Interval: time.Second}, []step{
			{0, a, true}, {0, b, true}, {500 * time.Millisecond, a, false}, {time.Second, a, true},
		}, 0},
		{"per key", Config{Limit: 1, Interval: time.Second, Key: "k"}, []step{
			{0, a, true}, {0, b, true}, {0, a, false}, {999 * time.Millisecond, b, false}, {time.Second, b, true},
		}, 0},
		{"windows are aligned, not sliding", Config{Limit: 1, Interval: 10 * time.Second}, []step{
			{9 * time.Second, a, true}, {10 * time.Second, a, true}, {19 * time.Second, a, false},
		}, 0},
		{"missing key shares the empty key's budget", Config{Limit: 1, Interval: time.Second, Key: "k"}, []step{
			{0, map[string]any{}, true}, {0, map[string]any{"x": 1.0}, false},
		}, 0},
		{"key error lets through and counts", Config{Limit: 1, Interval: time.Second, Key: `k + 1`}, []step{
			{0, a, true}, {0, a, true},
		}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			th, err := New(&c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			clk := &clock{}
			th.now = clk.now
			for i, s := range c.steps {
				clk.t = t0.Add(s.at)
				if got := th.Apply(&event.Event{Fields: s.fields}); got != s.pass {
					t.Fatalf("step %d: pass = %v, want %v", i, got, s.pass)
				}
			}
			if example.Count(th, "errors") != c.errors {
				t.Fatalf("errors = %d, want %d", example.Count(th, "errors"), c.errors)
			}
		})
	}
}

func TestStateIsForgotten(t *testing.T) {
	th, _ := New(&Config{Limit: 1, Interval: time.Second, Key: "k"})
	clk := &clock{time.Unix(0, 0)}
	th.now = clk.now
	for i := 0; i < 5000; i++ {
		th.Apply(&event.Event{Fields: map[string]any{"k": float64(i)}})
	}
	clk.t = clk.t.Add(time.Second)
	th.Apply(&event.Event{Fields: map[string]any{"k": "x"}})
	th.mu.Lock()
	n := len(th.counts)
	th.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d keys kept after the window ended, want 1", n)
	}
}

func TestConcurrentExactLimit(t *testing.T) {
	th, _ := New(&Config{Limit: 100, Interval: time.Hour})
	var wg sync.WaitGroup
	var mu sync.Mutex
	passed := 0
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				if th.Apply(&event.Event{}) {
					mu.Lock()
					passed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	// The hour-long window may roll over during the test only if it
	// straddles an hour boundary; allow that single case.
	if passed != 100 && passed != 200 {
		t.Fatalf("passed %d, want 100", passed)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"filters:\n  - type: throttle\n    limit: 0\n", "t.yaml:3: filters[0].limit: must be at least 1"},
		{"filters:\n  - type: throttle\n    limit: 5\n    interval: 0s\n", "t.yaml:4: filters[0].interval: must be positive"},
		{"filters:\n  - type: throttle\n    limit: 5\n    interval: 5\n", "t.yaml:4: filters[0].interval"},
		{"filters:\n  - type: throttle\n    limit: 5\n    key: 'lower()'\n", "t.yaml:4: filters[0].key: line 1, column 1: not enough arguments"},
	} {
		_, err := example.Parse("t.yaml", c.yaml, reg())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want %q", c.yaml, err, c.want)
		}
	}
}

func BenchmarkThrottleKeyed(b *testing.B) {
	th, _ := New(&Config{Limit: 1 << 30, Interval: time.Second, Key: "service"})
	e := &event.Event{Fields: map[string]any{"service": "checkout"}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		th.Apply(e)
	}
}

// Issue 20: after a burst of distinct keys the key map is made again, small,
// once windows need far fewer keys (a cleared Go map keeps its buckets; on
// today's main the condition compared the window's keys with themselves and
// never held).
func TestKeyMapShrinksAfterBurst(t *testing.T) {
	th, err := New(&Config{Limit: 1, Interval: time.Second, Key: "user"})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{time.Unix(1000, 0)}
	th.now = clk.now
	for i := range 50_000 {
		th.Apply(&event.Event{Fields: map[string]any{"user": strconv.Itoa(i)}})
	}
	clk.t = clk.t.Add(time.Second) // the burst window ends
	th.Apply(&event.Event{Fields: map[string]any{"user": "a"}})
	if th.sized != 50_000 {
		t.Fatalf("sized after the burst = %d", th.sized)
	}
	clk.t = clk.t.Add(time.Second) // a quiet window ends
	th.Apply(&event.Event{Fields: map[string]any{"user": "b"}})
	if th.sized != 1 || len(th.counts) != 1 {
		t.Fatalf("map not made again after a quiet window: sized %d, len %d", th.sized, len(th.counts))
	}
	// Budgets still work per key in the new map.
	if th.Apply(&event.Event{Fields: map[string]any{"user": "b"}}) {
		t.Fatal("second record of b in the window let through")
	}
}
