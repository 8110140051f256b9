package stdout

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/input"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/plugins"
)

func TestJSONAndText(t *testing.T) {
	raw := &event.Event{Raw: []byte(`{"b":1,"a":"x"}`), Flags: event.RawJSON, Fields: map[string]any{}, Input: "app"}
	parsed := &event.Event{Fields: map[string]any{"message": "hello", "level": "info"}, Input: "app", Time: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}

	var out bytes.Buffer
	j := New(&Config{Format: "json"}, &out)
	var recs [][]byte
	for _, e := range []*event.Event{raw, parsed} {
		r, err := j.Encode(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if err := j.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if want := `{"b":1,"a":"x"}` + "\n" + `{"level":"info","message":"hello"}` + "\n"; out.String() != want {
		t.Fatalf("json:\n%s\nwant:\n%s", out.String(), want)
	}

	out.Reset()
	x := New(&Config{Format: "text"}, &out)
	r, _ := x.Encode(nil, parsed)
	x.Write(context.Background(), [][]byte{r})
	if want := "2026-11-25T10:00:00.000Z app hello\n"; out.String() != want {
		t.Fatalf("text: %q, want %q", out.String(), want)
	}
}

func TestValidate(t *testing.T) {
	if err := (&Config{Format: "xml"}).Validate(); err == nil || !strings.Contains(err.Error(), "format") {
		t.Fatalf("xml accepted: %v", err)
	}
}

func TestREADMEShowsExample(t *testing.T) {
	ex, _ := os.ReadFile("example.yaml")
	readme, _ := os.ReadFile("README.md")
	if len(ex) == 0 || !bytes.Contains(readme, []byte("```yaml\n"+string(ex)+"```")) {
		t.Fatal("README.md does not show example.yaml verbatim")
	}
}

// example.yaml loads through the real config loader.
func TestExampleLoads(t *testing.T) {
	ex, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	reg := plugins.New()
	reg.AddInput("stub", plugins.Input{Config: func() any { return &struct{}{} },
		New: func(any, input.Env) (input.Input, error) { return nil, nil }})
	reg.AddParser("json", plugins.Parser{New: func(parser.Config, plugins.ParserEnv) (parser.Parser, func() parser.Assembler, error) {
		return nil, nil, nil
	}})
	p, _ := plugins.Default.Output("stdout")
	reg.AddOutput("stdout", p)
	if _, err := config.Parse("example.yaml", append([]byte("inputs: [{name: x, type: stub}]\n"), ex...), reg); err != nil {
		t.Fatal(err)
	}
}
