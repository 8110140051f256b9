package elasticsearch

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/input"
	"github.com/sidelog/sidelog/plugins"
)

// TestExampleYAML loads example.yaml with the real config loader (strict
// keys, ${VAR}, Validate) and checks what it decoded.
func TestExampleYAML(t *testing.T) {
	t.Setenv("ES_PASSWORD", "s3cret-example")
	data, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	reg := plugins.New()
	reg.AddInput("tail", plugins.Input{
		Config: func() any {
			return &struct {
				Paths []string `yaml:"paths"`
			}{}
		},
		New: func(any, input.Env) (input.Input, error) { return nil, nil },
	})
	reg.AddParser("json", plugins.Parser{})
	p, ok := plugins.Default.Output("elasticsearch")
	if !ok {
		t.Fatal("elasticsearch is not registered")
	}
	reg.AddOutput("elasticsearch", p)
	cfg, err := config.Parse("example.yaml", data, reg)
	if err != nil {
		t.Fatalf("example.yaml: %v", err)
	}
	c := cfg.Outputs[0].Plugin.(*Config)
	if c.Password != "s3cret-example" || c.Index != "app-{{ service }}-%Y.%m.%d" || len(c.Endpoints) != 2 ||
		c.MaxRequestBytes != 10<<20 || c.TLS == nil || c.TLS.CAFile != "testdata/ca.pem" || c.Mode != "bulk" || c.ID != "source" {
		t.Fatalf("decoded %+v", c)
	}
	if cfg.Outputs[0].Batch.MaxEvents != 1000 {
		t.Fatalf("engine keys: %+v", cfg.Outputs[0])
	}
}

func TestDefaultsValid(t *testing.T) {
	c := NewConfig()
	c.Endpoints = []string{"http://127.0.0.1:9200"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.indexTemplate() != "sidelog-%Y.%m.%d" {
		t.Fatal(c.indexTemplate())
	}
	c.Mode = "data_stream"
	if c.indexTemplate() != "logs-sidelog-default" {
		t.Fatal(c.indexTemplate())
	}
}

// The contract's example: a tls block beside an http endpoint is accepted
// (the output logs a warning that requests are not encrypted).
func TestTLSBesideHTTPAccepted(t *testing.T) {
	c := NewConfig()
	c.Endpoints = []string{"http://127.0.0.1:9200"}
	c.TLS = &TLSConfig{CAFile: "testdata/ca.pem"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateRefuses(t *testing.T) {
	const secret = "hunter2-SECRET"
	cases := []struct {
		name    string
		mod     func(c *Config)
		key     string // the KeyError's key
		message string
	}{
		{"no endpoints", func(c *Config) { c.Endpoints = nil }, "endpoints", "at least one endpoint"},
		{"bad scheme", func(c *Config) { c.Endpoints = []string{"ftp://x:9200"} }, "endpoints[0]", "http or https"},
		{"credentials in URL", func(c *Config) { c.Endpoints = []string{"http://elastic:" + secret + "@x:9200"} }, "endpoints[0]", "credentials in the URL"},
		{"bad mode", func(c *Config) { c.Mode = "stream" }, "mode", "bulk or data_stream"},
		{"bad id", func(c *Config) { c.ID = "hash" }, "id", "source or none"},
		{"bad compression", func(c *Config) { c.Compression = "zstd" }, "compression", "gzip or none"},
		{"max_in_flight 0", func(c *Config) { c.MaxInFlight = 0 }, "max_in_flight", "between 1 and 64"},
		{"tiny request", func(c *Config) { c.MaxRequestBytes = 10 }, "max_request_bytes", "at least 1KiB"},
		{"no timeout", func(c *Config) { c.Timeout = 0 }, "timeout", "positive"},
		{"bad template", func(c *Config) { c.Index = "app-{{ service" }, "index", "unclosed"},
		{"upper case index", func(c *Config) { c.Index = "App-{{ service }}" }, "index", "lowercase"},
		{"bad index char", func(c *Config) { c.Index = "app*{{ service }}" }, "index", "may not appear"},
		{"password and api_key", func(c *Config) { c.Username, c.Password, c.APIKey = "u", secret, secret }, "api_key", "only one of"},
		{"api_key and bearer", func(c *Config) { c.APIKey, c.BearerToken = secret, secret }, "api_key", "only one of"},
		{"password without user", func(c *Config) { c.Password = secret }, "username", "required with password"},
		{"user without password", func(c *Config) { c.Username = "elastic" }, "password", "required with username"},
		{"missing CA", func(c *Config) {
			c.Endpoints = []string{"https://x:9200"}
			c.TLS = &TLSConfig{CAFile: "testdata/nope.pem"}
		}, "tls.ca_file", "no such file"},
		{"CA not PEM", func(c *Config) {
			c.Endpoints = []string{"https://x:9200"}
			c.TLS = &TLSConfig{CAFile: "example.yaml"}
		}, "tls.ca_file", "no PEM certificate"},
		{"cert without key", func(c *Config) {
			c.Endpoints = []string{"https://x:9200"}
			c.TLS = &TLSConfig{CertFile: "testdata/ca.pem"}
		}, "tls.key_file", "required with tls.cert_file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := NewConfig()
			c.Endpoints = []string{"http://127.0.0.1:9200"}
			tc.mod(c)
			err := c.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error quotes a secret: %v", err)
			}
			var found bool
			for _, e := range unjoin(err) {
				var ke *plugins.KeyError
				if errors.As(e, &ke) && ke.Key == tc.key && strings.Contains(ke.Err.Error(), tc.message) {
					found = true
				}
			}
			if !found {
				t.Fatalf("want key %q with %q, got: %v", tc.key, tc.message, err)
			}
		})
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

func TestReadmeShowsExample(t *testing.T) {
	ex, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```yaml\n"+string(ex)+"```") {
		t.Fatal("README.md does not show example.yaml as it is")
	}
}
