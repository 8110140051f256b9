package tail

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/output"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/plugins"
)

type stubOutput struct{ output.Output }

// The example the README shows is loaded by the real config loader, in an
// isolated registry holding this input and stand-ins for the rest.
func TestExampleConfig(t *testing.T) {
	data, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), string(data)) {
		t.Fatal("README.md does not show example.yaml verbatim")
	}
	reg := plugins.New()
	reg.AddInput("tail", Plugin)
	reg.AddParser("json", plugins.Parser{New: func(parser.Config, plugins.ParserEnv) (parser.Parser, func() parser.Assembler, error) {
		return nil, nil, nil
	}})
	reg.AddOutput("stdout", plugins.Output{Config: func() any { return &struct{}{} }, New: func(any, plugins.OutputEnv) (output.Output, error) {
		return stubOutput{}, nil
	}})
	cfg, err := config.Parse("example.yaml", data, reg)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := cfg.Inputs[0].Plugin.(*Config)
	if !ok {
		t.Fatalf("plugin config %T", cfg.Inputs[0].Plugin)
	}
	if len(c.Paths) != 2 || c.Exclude[1] != "/var/log/app/debug/**" || c.ReadFrom != "head" ||
		c.PollInterval != 250*time.Millisecond || c.MaxLineBytes() != 1<<20 || c.MaxDeletedHold != 10*time.Minute ||
		c.ReadBufferBytes != 256<<10 || c.RotateWait != 5*time.Second || !c.Watch || c.MaxPollInterval != 5*time.Second {
		t.Fatalf("decoded %+v", c)
	}
	// max_poll_interval is read from the file, not only defaulted
	other := strings.Replace(string(data), "max_poll_interval: 5s", "max_poll_interval: 7s", 1)
	if cfg, err := config.Parse("other.yaml", []byte(other), reg); err != nil || cfg.Inputs[0].Plugin.(*Config).MaxPollInterval != 7*time.Second {
		t.Fatalf("max_poll_interval: 7s: %v", err)
	}
	neg := strings.Replace(string(data), "max_poll_interval: 5s", "max_poll_interval: -1s", 1)
	if _, err := config.Parse("neg.yaml", []byte(neg), reg); err == nil || !strings.Contains(err.Error(), "max_poll_interval") {
		t.Fatalf("negative max_poll_interval: %v", err)
	}
	// a wrong value is refused with its key
	bad := strings.Replace(string(data), "read_from: head", "read_from: middle", 1)
	if _, err := config.Parse("bad.yaml", []byte(bad), reg); err == nil || !strings.Contains(err.Error(), "read_from") {
		t.Fatalf("bad read_from: %v", err)
	}
}
