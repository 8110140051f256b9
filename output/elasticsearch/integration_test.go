package elasticsearch

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/output"
	"github.com/sidelog/sidelog/plugins"
)

// TestIntegration runs the main scenarios against a real cluster when ES_URL
// is set (with ES_USERNAME/ES_PASSWORD or ES_API_KEY; ES_CA_FILE or
// ES_INSECURE=1 for TLS). It creates indices named sidelog-it-<time>-* and
// a data stream logs-sidelogit<time>-default, and deletes them at the end.
// See docs/output-elasticsearch.md.
func TestIntegration(t *testing.T) {
	url := os.Getenv("ES_URL")
	if url == "" {
		t.Skip("ES_URL not set: the integration test against a real Elasticsearch did not run (see docs/output-elasticsearch.md)")
	}
	stamp := time.Now().UTC().Format("20060102150405")
	base := func(c *Config) {
		c.Endpoints = []string{url}
		c.Username, c.Password, c.APIKey = os.Getenv("ES_USERNAME"), os.Getenv("ES_PASSWORD"), os.Getenv("ES_API_KEY")
		if strings.HasPrefix(url, "https:") {
			c.TLS = &TLSConfig{CAFile: os.Getenv("ES_CA_FILE"), InsecureSkipVerify: os.Getenv("ES_INSECURE") == "1"}
		}
	}
	admin := func() *Output {
		c := NewConfig()
		base(c)
		o, err := New(c, plugins.OutputEnv{})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}()
	do := func(method, path string) string {
		req, _ := http.NewRequest(method, path, nil)
		res, err := admin.client.Perform(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	count := func(index string) int {
		do("POST", "/"+index+"/_refresh")
		var n int
		body := do("GET", "/"+index+"/_count")
		if _, err := fmt.Sscanf(body[strings.Index(body, `"count":`)+len(`"count":`):], "%d", &n); err != nil {
			t.Fatalf("count %s: %s", index, body)
		}
		return n
	}
	bulkIndex := "sidelog-it-" + stamp + "-svc"
	stream := "logs-sidelogit" + stamp + "-default"
	t.Cleanup(func() {
		do("DELETE", "/"+bulkIndex)
		do("DELETE", "/_data_stream/"+stream)
	})

	t.Run("bulk: replay does not duplicate", func(t *testing.T) {
		o := testOutput(t, func(c *Config) { base(c); c.Index = "sidelog-it-" + stamp + "-{{ service }}" }, plugins.OutputEnv{})
		batch := docs(t, o, 0, 500)
		for range 2 {
			if err := o.Write(t.Context(), batch); err != nil {
				t.Fatal(err)
			}
		}
		if n := count(bulkIndex); n != 500 {
			t.Fatalf("%d documents, want 500", n)
		}
	})
	t.Run("data_stream: replay answers 409, counted delivered", func(t *testing.T) {
		o := testOutput(t, func(c *Config) {
			base(c)
			c.Mode = "data_stream"
			c.Index = "logs-sidelogit" + stamp + "-default"
		}, plugins.OutputEnv{})
		batch := docs(t, o, 0, 500)
		for range 2 {
			if err := o.Write(t.Context(), batch); err != nil {
				t.Fatal(err)
			}
		}
		if n := count(stream); n != 500 {
			t.Fatalf("%d documents, want 500", n)
		}
	})
	t.Run("mapping conflict is permanent with the reason", func(t *testing.T) {
		o := testOutput(t, func(c *Config) { base(c); c.Index = bulkIndex }, plugins.OutputEnv{})
		// "n" is a long in this index by now; an object cannot go there.
		e := rawEvent(`{"n":{"nested":true}}`, map[string]any{}, 987654321)
		rec, err := o.Encode(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		err = o.Write(t.Context(), [][]byte{rec})
		var be *output.BatchError
		if !errors.As(err, &be) || be.Failed[0] == nil {
			t.Fatalf("got %v", err)
		}
		if c, _ := output.Classify(be.Failed[0]); c != output.Permanent || !strings.Contains(be.Failed[0].Error(), "exception") {
			t.Fatalf("%v: %v", c, be.Failed[0])
		}
	})
}
