package docs_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/pipeline"
	"github.com/sidelog/sidelog/plugins"
)

// The public config contract (a copy of shared/config-contract.yaml in
// testdata/) loads and builds: every key it shows is accepted under its
// name. Only its absolute paths are pointed into a temporary directory.
func TestConfigContractLoads(t *testing.T) {
	b, err := os.ReadFile("../testdata/config-contract.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca, _ := filepath.Abs("../output/elasticsearch/testdata/ca.pem")
	text := strings.NewReplacer(
		"/var/lib/sidelog", filepath.Join(dir, "data"),
		"/etc/ssl/es-ca.pem", ca,
		"/var/log/sidelog/archive.ndjson", filepath.Join(dir, "archive.ndjson"),
	).Replace(string(b))
	t.Setenv("ES_PASSWORD", "contract-test-password")
	t.Setenv("DD_API_KEY", "contract-test-key")
	t.Setenv("NODE_NAME", "node-a")
	cfg, err := config.Parse("config-contract.yaml", []byte(text), plugins.Default)
	if _, dd := plugins.Default.Output("datadog"); !dd {
		// A slim build: the only complaint is the missing datadog output.
		if err == nil || strings.Count(err.Error(), "\n") != 0 || !strings.Contains(err.Error(), `unknown output type "datadog"`) {
			t.Fatalf("slim build: %v", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.Build(cfg, pipeline.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if len(cfg.Inputs) != 1 || len(cfg.Filters) != 6 || len(cfg.Outputs) != 6 {
		t.Fatalf("%d inputs, %d filters, %d outputs", len(cfg.Inputs), len(cfg.Filters), len(cfg.Outputs))
	}
}
