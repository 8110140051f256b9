package kafka

import (
	"bytes"
	"os"
	"testing"

	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/output"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/plugins"
)

func TestREADMEShowsExample(t *testing.T) {
	ex, _ := os.ReadFile("example.yaml")
	readme, _ := os.ReadFile("README.md")
	if len(ex) == 0 || !bytes.Contains(readme, []byte("```yaml\n"+string(ex)+"```")) {
		t.Fatal("README.md does not show example.yaml verbatim")
	}
}

// example.yaml loads through the real config loader (no broker contacted).
func TestExampleLoads(t *testing.T) {
	ex, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	reg := plugins.New()
	p, _ := plugins.Default.Input("kafka")
	reg.AddInput("kafka", p)
	reg.AddParser("json", plugins.Parser{New: func(parser.Config, plugins.ParserEnv) (parser.Parser, func() parser.Assembler, error) {
		return nil, nil, nil
	}})
	reg.AddOutput("stub", plugins.Output{Config: func() any { return &struct{}{} },
		New: func(any, plugins.OutputEnv) (output.Output, error) { return nil, nil }})
	cfg, err := config.Parse("example.yaml", append(ex, []byte("outputs: [{name: x, type: stub}]\n")...), reg)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Inputs[0].Plugin.(*Config)
	if c.Group != "sidelog-aggregators" || len(c.Topics) != 2 || len(c.Brokers) != 2 {
		t.Fatalf("%+v", c)
	}
	bad := bytes.Replace(ex, []byte("    group: sidelog-aggregators"), []byte("    group: \"\""), 1)
	_, err = config.Parse("example.yaml", append(bad, []byte("outputs: [{name: x, type: stub}]\n")...), reg)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("inputs[0].group: is required")) {
		t.Fatalf("no group: %v", err)
	}
}
