package drop

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

func records(t *testing.T, path string) []*event.Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []*event.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, &event.Event{Raw: []byte(sc.Text()), Fields: m, Input: "app"})
	}
	return out
}

func TestExample(t *testing.T) {
	reg := example.Registry(map[string]plugins.Filter{"drop": Plugin})
	cfg, err := example.ParseFile("example.yaml", reg)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := example.Build(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, e := range records(t, "testdata/records.ndjson") {
		if chain.Apply(e) {
			kept = append(kept, string(e.Raw))
		}
	}
	want := []string{
		`{"level":"info","path":"/api"}`,
		`{"level":"error","path":"/api","msg":"boom"}`,
		`{"path":"/api"}`,
	}
	if strings.Join(kept, "\n") != strings.Join(want, "\n") {
		t.Fatalf("kept:\n%s\nwant:\n%s", strings.Join(kept, "\n"), strings.Join(want, "\n"))
	}
}

func TestTable(t *testing.T) {
	reg := example.Registry(map[string]plugins.Filter{"drop": Plugin})
	cases := []struct {
		name, yaml string
		fields     map[string]any
		kept       bool
		errors     int64
	}{
		{"no when drops all", "filters: [{type: drop}]", map[string]any{"a": 1.0}, false, 0},
		{"when true", `filters: [{type: drop, when: 'level == "debug"'}]`, map[string]any{"level": "debug"}, false, 0},
		{"when false", `filters: [{type: drop, when: 'level == "debug"'}]`, map[string]any{"level": "info"}, true, 0},
		{"when fails: kept and counted", `filters: [{type: drop, when: 'latency_ms + "x" == "1x"'}]`, map[string]any{"latency_ms": 1.0}, true, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := example.Parse("t.yaml", c.yaml, reg)
			if err != nil {
				t.Fatal(err)
			}
			chain, err := example.Build(cfg, reg)
			if err != nil {
				t.Fatal(err)
			}
			if got := chain.Apply(&event.Event{Fields: c.fields}); got != c.kept {
				t.Fatalf("kept = %v, want %v", got, c.kept)
			}
			if chain[0].Errors != c.errors {
				t.Fatalf("errors = %d, want %d", chain[0].Errors, c.errors)
			}
		})
	}
}

func TestUnknownKeyRefused(t *testing.T) {
	reg := example.Registry(map[string]plugins.Filter{"drop": Plugin})
	_, err := example.Parse("t.yaml", "filters:\n  - type: drop\n    rate: 3\n", reg)
	if err == nil || !strings.Contains(err.Error(), "t.yaml:3: filters[0].rate") {
		t.Fatalf("err = %v", err)
	}
}

func TestCompileErrorNamesFilterLineColumn(t *testing.T) {
	reg := example.Registry(map[string]plugins.Filter{"drop": Plugin})
	for _, c := range []struct{ when, want string }{
		{`level ==`, "t.yaml:3: filters[0].when: line 1, column 8: unexpected token EOF"},
		{`"a" + 1 > 2`, "t.yaml:3: filters[0].when: line 1, column 5: invalid operation: + (mismatched types string and int)"},
		{`lower()`, "t.yaml:3: filters[0].when: line 1, column 1: not enough arguments to call lower"},
	} {
		_, err := example.Parse("t.yaml", "filters:\n  - type: drop\n    when: '"+c.when+"'\n", reg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("when %s: err = %v, want %q", c.when, err, c.want)
		}
	}
	// Possibly wrong: accepted at load.
	if _, err := example.Parse("t.yaml", "filters:\n  - type: drop\n    when: 'latency_ms + \"x\" == \"\"'\n", reg); err != nil {
		t.Fatalf("possibly-wrong expression refused: %v", err)
	}
}
