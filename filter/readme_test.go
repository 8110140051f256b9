package filter_test

import (
	"os"
	"strings"
	"testing"
)

// Every filter's README shows its example.yaml verbatim (the example itself
// is loaded through the config loader by the filter's own tests).
func TestREADMEsShowTheirExample(t *testing.T) {
	for _, name := range []string{"drop", "keep", "modify", "redact", "kubernetes", "sample", "throttle"} {
		ex, err := os.ReadFile(name + "/example.yaml")
		if err != nil {
			t.Fatal(err)
		}
		readme, err := os.ReadFile(name + "/README.md")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(readme), "```yaml\n"+string(ex)+"```") {
			t.Errorf("%s/README.md does not show example.yaml verbatim", name)
		}
	}
}
