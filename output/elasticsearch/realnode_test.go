package elasticsearch

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// node is a real server from internal/testservers, for the tests that
// check the output against it.
type node struct {
	t   *testing.T
	url string
}

// do sends a request and returns the status and body.
func (n node) do(method, path, body string) (int, string) {
	n.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	// Not t.Context(): cleanups use it too, after it is cancelled.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, n.url+path, r)
	if err != nil {
		n.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// must is do, failing the test on a status other than 200.
func (n node) must(method, path, body string) string {
	n.t.Helper()
	st, b := n.do(method, path, body)
	if st != http.StatusOK {
		n.t.Fatalf("%s %s: %d %s", method, path, st, b)
	}
	return b
}

// count refreshes target and returns its number of documents.
func (n node) count(target string) int {
	n.t.Helper()
	n.must("POST", "/"+target+"/_refresh", "")
	var c struct {
		Count int `json:"count"`
	}
	if err := json.Unmarshal([]byte(n.must("GET", "/"+target+"/_count", "")), &c); err != nil {
		n.t.Fatal(err)
	}
	return c.Count
}

// cleanup deletes indices, data streams and templates at the end of the
// test (errors ignored: some may not exist).
func (n node) cleanup(paths ...string) {
	n.t.Cleanup(func() {
		for _, p := range paths {
			req, _ := http.NewRequest("DELETE", n.url+p, nil)
			c := &http.Client{Timeout: 30 * time.Second}
			if resp, err := c.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	})
}
