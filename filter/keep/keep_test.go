package keep

import (
	"bufio"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/filter/internal/example"
	"github.com/sidelog/sidelog/plugins"
)

func reg() *plugins.Registry { return example.Registry(map[string]plugins.Filter{"keep": Plugin}) }

func TestExample(t *testing.T) {
	cfg, err := example.ParseFile("example.yaml", reg())
	if err != nil {
		t.Fatal(err)
	}
	chain, err := example.Build(cfg, reg())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("testdata/records.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var kept []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		if chain.Apply(&event.Event{Fields: m}) {
			kept = append(kept, sc.Text())
		}
	}
	want := `{"level":"warn","service":"checkout"}` + "\n" + `{"level":"error","service":"checkout","msg":"boom"}`
	if got := strings.Join(kept, "\n"); got != want {
		t.Fatalf("kept:\n%s\nwant:\n%s", got, want)
	}
}

func TestTable(t *testing.T) {
	cases := []struct {
		name, when string
		fields     map[string]any
		kept       bool
		errors     int64
	}{
		{"true keeps", `level == "error"`, map[string]any{"level": "error"}, true, 0},
		{"false drops", `level == "error"`, map[string]any{"level": "info"}, false, 0},
		{"missing field drops", `level == "error"`, map[string]any{}, false, 0},
		{"run-time error keeps and counts", `latency_ms > 100`, map[string]any{"latency_ms": "slow"}, true, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := example.Parse("t.yaml", "filters: [{type: keep, when: '"+c.when+"'}]", reg())
			if err != nil {
				t.Fatal(err)
			}
			chain, err := example.Build(cfg, reg())
			if err != nil {
				t.Fatal(err)
			}
			if got := chain.Apply(&event.Event{Fields: c.fields}); got != c.kept {
				t.Fatalf("kept = %v, want %v", got, c.kept)
			}
			if got := example.Count(chain[0].Filter, "errors"); got != c.errors {
				t.Fatalf("errors = %d, want %d", got, c.errors)
			}
			if keys, all := chain[0].Filter.(*Keep).Keys(); all || len(keys) != 1 {
				t.Fatalf("keys = %v %v", keys, all)
			}
		})
	}
}

func TestWhenRequired(t *testing.T) {
	cfg, err := example.Parse("t.yaml", "filters:\n  - type: keep\n", reg())
	if err != nil {
		t.Fatal(err)
	}
	_, err = example.Build(cfg, reg())
	if err == nil || !strings.Contains(err.Error(), "t.yaml:2: filters[0]") || !strings.Contains(err.Error(), "keep needs a `when`") {
		t.Fatalf("err = %v", err)
	}
}
