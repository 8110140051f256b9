package kafka

import (
	"bytes"
	"os"
	"testing"

	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/input"
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
	reg.AddInput("stub", plugins.Input{Config: func() any { return &struct{}{} },
		New: func(any, input.Env) (input.Input, error) { return nil, nil }})
	reg.AddParser("json", plugins.Parser{New: func(parser.Config, plugins.ParserEnv) (parser.Parser, func() parser.Assembler, error) {
		return nil, nil, nil
	}})
	p, _ := plugins.Default.Output("kafka")
	reg.AddOutput("kafka", p)
	cfg, err := config.Parse("example.yaml", append([]byte("inputs: [{name: x, type: stub}]\n"), ex...), reg)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Outputs[0].Plugin.(*Config)
	if c.Topic == "" || c.Key == "" || c.Headers["service"] == "" || c.Compression != "zstd" || len(c.Brokers) != 2 {
		t.Fatalf("%+v", c)
	}
	// A wrong acks is refused with the file's line and the key.
	bad := bytes.Replace(ex, []byte("acks: all"), []byte("acks: 1"), 1)
	_, err = config.Parse("example.yaml", append([]byte("inputs: [{name: x, type: stub}]\n"), bad...), reg)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("example.yaml:10: outputs[0].acks: must be all")) {
		t.Fatalf("acks: 1: %v", err)
	}
}
