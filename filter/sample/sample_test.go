package sample

import (
	"fmt"
	"github.com/sidelog/sidelog/filter/internal/keystr"
	"strings"
	"sync"
	"testing"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/filter/internal/example"
	"github.com/sidelog/sidelog/plugins"
)

func reg() *plugins.Registry { return example.Registry(map[string]plugins.Filter{"sample": Plugin}) }

func TestExample(t *testing.T) {
	cfg, err := example.ParseFile("example.yaml", reg())
	if err != nil {
		t.Fatal(err)
	}
	chain, err := example.Build(cfg, reg())
	if err != nil {
		t.Fatal(err)
	}
	// 1000 traces of 5 debug records each: every trace is kept whole or
	// dropped whole, about 1 in 10 is kept; info records all pass.
	keptTraces := 0
	for tr := 0; tr < 1000; tr++ {
		kept := 0
		for i := 0; i < 5; i++ {
			if chain.Apply(&event.Event{Fields: map[string]any{"level": "debug", "trace_id": fmt.Sprintf("%032x", tr*7919)}}) {
				kept++
			}
		}
		if kept != 0 && kept != 5 {
			t.Fatalf("trace %d: %d of 5 kept", tr, kept)
		}
		if kept == 5 {
			keptTraces++
		}
		if !chain.Apply(&event.Event{Fields: map[string]any{"level": "info", "trace_id": "x"}}) {
			t.Fatal("info record sampled")
		}
	}
	if keptTraces < 60 || keptTraces > 140 {
		t.Fatalf("%d of 1000 traces kept, want about 100", keptTraces)
	}
	if got := example.Count(chain[0].Filter, "sampled_out"); got != int64(5*(1000-keptTraces)) {
		t.Fatalf("sampled_out = %d", got)
	}
}

func TestTable(t *testing.T) {
	cases := []struct {
		name   string
		cfg    Config
		fields []map[string]any
		kept   string // one char per record: k kept, d dropped
		errors int64
	}{
		{"rate 1 keeps all", Config{Rate: 1}, rep(map[string]any{}, 4), "kkkk", 0},
		{"counter keeps the first of each 3", Config{Rate: 3}, rep(map[string]any{}, 7), "kddkddk", 0},
		{"same key same decision", Config{Rate: 2, Key: "k"}, rep(map[string]any{"k": "a"}, 3), same(Hash("a")%2 == 0, 3), 0},
		{"missing key uses the counter", Config{Rate: 2, Key: "k"}, rep(map[string]any{}, 4), "kdkd", 0},
		{"key error keeps and counts", Config{Rate: 2, Key: `k + 1`}, rep(map[string]any{"k": "x"}, 2), "kk", 2},
		{"numeric key", Config{Rate: 2, Key: "n"}, rep(map[string]any{"n": 42.0}, 2), same(Hash("42")%2 == 0, 2), 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := New(&c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			var got strings.Builder
			for _, f := range c.fields {
				if s.Apply(&event.Event{Fields: f}) {
					got.WriteByte('k')
				} else {
					got.WriteByte('d')
				}
			}
			if got.String() != c.kept {
				t.Fatalf("got %s, want %s", got.String(), c.kept)
			}
			if example.Count(s, "errors") != c.errors {
				t.Fatalf("errors = %d", example.Count(s, "errors"))
			}
		})
	}
}

func Hash(s string) uint64 { return keystr.Hash(s) }

func rep(m map[string]any, n int) []map[string]any {
	out := make([]map[string]any, n)
	for i := range out {
		out[i] = m
	}
	return out
}

func same(keep bool, n int) string {
	if keep {
		return strings.Repeat("k", n)
	}
	return strings.Repeat("d", n)
}

func TestConcurrentCounter(t *testing.T) {
	s, _ := New(&Config{Rate: 4})
	var kept sync.WaitGroup
	var mu sync.Mutex
	n := 0
	for g := 0; g < 4; g++ {
		kept.Add(1)
		go func() {
			defer kept.Done()
			for i := 0; i < 1000; i++ {
				if s.Apply(&event.Event{}) {
					mu.Lock()
					n++
					mu.Unlock()
				}
			}
		}()
	}
	kept.Wait()
	if n != 1000 {
		t.Fatalf("kept %d of 4000 at rate 4, want exactly 1000", n)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"filters:\n  - type: sample\n    rate: 0\n", "t.yaml:3: filters[0].rate: must be at least 1"},
		{"filters:\n  - type: sample\n    rate: 2\n    key: 'a +'\n", "t.yaml:4: filters[0].key: line 1, column"},
		{"filters:\n  - type: sample\n    rate: ten\n", "t.yaml:3: filters[0].rate"},
	} {
		_, err := example.Parse("t.yaml", c.yaml, reg())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want %q", c.yaml, err, c.want)
		}
	}
}
