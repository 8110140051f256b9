package estest_test

// Answers of real nodes, captured into testdata/real-*.json, and estest
// checked against them.
//
// Re-capture (the servers from scripts/servers must run):
//
//	scripts/servers/server.sh start opensearch elasticsearch7
//	SIDELOG_CAPTURE=1 go test -run TestCaptureRealAnswers ./output/elasticsearch/estest/
//
// TestReplayRealAnswers (always run) sends each captured request to estest
// and compares the shape of the answers: HTTP status, errors flag, per item
// the op, status, error.type and which keys are present; for whole-request
// errors the status and error.type.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/sidelog/sidelog/internal/testservers"
	"github.com/sidelog/sidelog/output/elasticsearch/estest"
)

type call struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Body   string `json:"body,omitempty"`
}

type scenario struct {
	Name  string
	About string
	Setup []call // run on the real node before Request ({{index}} replaced)
	Clean []call // run on the real node after it
	Req   call
	// Fault is set when estest cannot know the cause (mappings, blocks,
	// auto-create settings): estest is then given the real item error as
	// an injected fault, and only the answer's shape is compared.
	Fault bool
}

type captured struct {
	About        string          `json:"about"`
	Request      call            `json:"request"`
	Status       int             `json:"status"`
	ElasticProd  string          `json:"x_elastic_product,omitempty"`
	Response     json.RawMessage `json:"response,omitempty"`
	ResponseText string          `json:"response_text,omitempty"`
	InjectFault  bool            `json:"inject_fault,omitempty"`
}

const ndjson = "application/x-ndjson"

func bulk(lines ...string) call {
	return call{Method: "POST", Path: "/_bulk", Body: strings.Join(lines, "\n") + "\n"}
}

var scenarios = []scenario{
	{Name: "get_root", About: "GET /", Req: call{Method: "GET", Path: "/"}},
	{Name: "bulk_success", About: "index without _id, create, index over it, delete, delete of a missing _id",
		Req: bulk(`{"index":{"_index":"{{index}}"}}`, `{"n":1}`,
			`{"create":{"_index":"{{index}}","_id":"a"}}`, `{"n":2}`,
			`{"index":{"_index":"{{index}}","_id":"a"}}`, `{"n":3}`,
			`{"delete":{"_index":"{{index}}","_id":"a"}}`,
			`{"delete":{"_index":"{{index}}","_id":"b"}}`)},
	{Name: "bulk_version_conflict", About: "create of an _id that exists: 409",
		Req: bulk(`{"create":{"_index":"{{index}}","_id":"x"}}`, `{"n":1}`,
			`{"create":{"_index":"{{index}}","_id":"x"}}`, `{"n":2}`)},
	{Name: "bulk_missing_pipeline", About: "an item naming an ingest pipeline that does not exist",
		Req: bulk(`{"index":{"_index":"{{index}}","pipeline":"sidelog-no-such-pipeline"}}`, `{"n":1}`)},
	{Name: "bulk_mapping_error", About: "a value the mapping refuses (integer field given a word)", Fault: true,
		Setup: []call{{Method: "PUT", Path: "/{{index}}", Body: `{"mappings":{"properties":{"n":{"type":"integer"}}}}`}},
		Req:   bulk(`{"index":{"_index":"{{index}}"}}`, `{"n":"abc"}`, `{"index":{"_index":"{{index}}"}}`, `{"n":4}`)},
	{Name: "bulk_write_block", About: "index.blocks.write: true on the target index", Fault: true,
		Setup: []call{{Method: "PUT", Path: "/{{index}}"}, {Method: "PUT", Path: "/{{index}}/_settings", Body: `{"index.blocks.write":true}`}},
		Clean: []call{{Method: "PUT", Path: "/{{index}}/_settings", Body: `{"index.blocks.write":false}`}},
		Req:   bulk(`{"create":{"_index":"{{index}}"}}`, `{"n":1}`)},
	{Name: "bulk_auto_create_off", About: "a missing index whose name action.auto_create_index refuses", Fault: true,
		Setup: []call{{Method: "PUT", Path: "/_cluster/settings", Body: `{"persistent":{"action.auto_create_index":"-noauto-*,+*"}}`}},
		Clean: []call{{Method: "PUT", Path: "/_cluster/settings", Body: `{"persistent":{"action.auto_create_index":null}}`}},
		Req:   bulk(`{"create":{"_index":"noauto-{{index}}"}}`, `{"n":1}`)},
	{Name: "action_require_alias", About: "require_alias: true on a concrete index name",
		Req: bulk(`{"create":{"_index":"{{index}}","require_alias":true}}`, `{"n":1}`)},
	{Name: "action_dynamic_templates", About: "dynamic_templates in the action line",
		Req: bulk(`{"create":{"_index":"{{index}}","dynamic_templates":{}}}`, `{"n":1}`)},
	{Name: "action_require_data_stream", About: "require_data_stream in the action line (Elasticsearch 8.13+)",
		Req: bulk(`{"create":{"_index":"{{index}}","require_data_stream":false}}`, `{"n":1}`)},
	{Name: "action_unknown_key", About: "an unknown key in the action line",
		Req: bulk(`{"create":{"_index":"{{index}}","sidelog_bogus":"x"}}`, `{"n":1}`)},
	{Name: "bulk_no_final_newline", About: "a body that does not end with a newline",
		Req: call{Method: "POST", Path: "/_bulk", Body: `{"create":{"_index":"{{index}}"}}` + "\n" + `{"n":1}`}},
	{Name: "bulk_unknown_op", About: "an action that is not index, create, delete or update",
		Req: bulk(`{"upsert":{"_index":"{{index}}"}}`, `{"n":1}`)},
}

func send(t *testing.T, base string, c call, index string) (int, http.Header, []byte) {
	t.Helper()
	path := strings.ReplaceAll(c.Path, "{{index}}", index)
	var body io.Reader
	if c.Body != "" {
		body = strings.NewReader(strings.ReplaceAll(c.Body, "{{index}}", index))
	}
	req, err := http.NewRequest(c.Method, base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if c.Body != "" {
		ct := "application/json"
		if strings.HasSuffix(path, "_bulk") {
			ct = ndjson
		}
		req.Header.Set("Content-Type", ct)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, raw
}

func TestCaptureRealAnswers(t *testing.T) {
	if os.Getenv("SIDELOG_CAPTURE") == "" {
		t.Skip("re-captures testdata/real-*.json from the real nodes only with SIDELOG_CAPTURE=1 (see the file's comment)")
	}
	for _, srv := range []struct {
		name string
		url  func(testing.TB) string
	}{{"opensearch", testservers.OpenSearch}, {"elasticsearch7", testservers.Elasticsearch7}} {
		t.Run(srv.name, func(t *testing.T) {
			base := srv.url(t)
			_, _, root := send(t, base, call{Method: "GET", Path: "/"}, "")
			var info struct {
				Version struct{ Number string } `json:"version"`
			}
			if err := json.Unmarshal(root, &info); err != nil || info.Version.Number == "" {
				t.Fatalf("GET /: %v %s", err, root)
			}
			out := map[string]captured{}
			for _, sc := range scenarios {
				index := testservers.UniqueName(t, "capture-"+strings.ReplaceAll(sc.Name, "_", "-"))
				for _, c := range sc.Setup {
					if st, _, b := send(t, base, c, index); st != 200 {
						t.Fatalf("%s setup %s %s: %d %s", sc.Name, c.Method, c.Path, st, b)
					}
				}
				st, h, b := send(t, base, sc.Req, index)
				for _, c := range sc.Clean {
					send(t, base, c, index)
				}
				send(t, base, call{Method: "DELETE", Path: "/{{index}}"}, index)
				cp := captured{About: sc.About, Request: sc.Req, Status: st, ElasticProd: h.Get("X-Elastic-Product"), InjectFault: sc.Fault}
				// Index names and volatile values stay as the node wrote
				// them; only the shape is compared.
				if json.Valid(b) && len(b) > 0 {
					var v any
					_ = json.Unmarshal(b, &v)
					cp.Response, _ = json.Marshal(v)
				} else {
					cp.ResponseText = string(b)
				}
				out[sc.Name] = cp
			}
			data, err := json.MarshalIndent(out, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join("testdata", "real-"+srv.name+"-"+info.Version.Number+".json")
			if err := os.WriteFile(file, append(data, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote %s", file)
		})
	}
}

// shape reduces an answer to what a client acts on.
func shape(status int, body []byte) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "status %d", status)
	var v map[string]any
	if json.Unmarshal(body, &v) != nil {
		if len(bytes.TrimSpace(body)) > 0 {
			sb.WriteString("; not JSON")
		}
		return sb.String()
	}
	if e, ok := v["error"].(map[string]any); ok {
		_, rc := e["root_cause"]
		fmt.Fprintf(&sb, "; error.type %v; reason %t; root_cause %t; status %v", e["type"], e["reason"] != nil, rc, v["status"])
	}
	if items, ok := v["items"].([]any); ok {
		fmt.Fprintf(&sb, "; errors %v", v["errors"])
		for i, it := range items {
			m, _ := it.(map[string]any)
			for op, x := range m {
				r, _ := x.(map[string]any)
				fmt.Fprintf(&sb, "\n item %d %s: status %v", i, op, r["status"])
				if e, ok := r["error"].(map[string]any); ok {
					fmt.Fprintf(&sb, ", error.type %v, reason %t", e["type"], e["reason"] != nil)
				} else {
					fmt.Fprintf(&sb, ", result %v", r["result"])
				}
				var keys []string
				for _, k := range []string{"_index", "_id", "_version", "error"} {
					if _, ok := r[k]; ok {
						keys = append(keys, k)
					}
				}
				sort.Strings(keys)
				fmt.Fprintf(&sb, ", keys %v", keys)
				if id, ok := r["_id"]; ok {
					fmt.Fprintf(&sb, ", _id null %t", id == nil)
				}
			}
		}
	}
	if _, ok := v["tagline"]; ok {
		ver, _ := v["version"].(map[string]any)
		_, n := v["name"]
		_, c := v["cluster_name"]
		_, u := v["cluster_uuid"]
		fmt.Fprintf(&sb, "; root: name %t cluster_name %t cluster_uuid %t version.number %t", n, c, u, ver["number"] != nil)
	}
	return sb.String()
}

// knownDifferences are answers where estest deliberately follows
// Elasticsearch 8/9, which it stands in for, rather than the captured
// older node; each says why.
var knownDifferences = map[string]string{
	// Elasticsearch 7.17 writes "_id":"auto-generated" for an item without
	// _id refused for a missing pipeline; OpenSearch writes null.
	"opensearch/bulk_missing_pipeline": `estest follows Elasticsearch 7.17 ("_id":"auto-generated"), OpenSearch writes "_id":null`,
	// Elasticsearch 7.17 skips an unknown action and then refuses the empty
	// request (action_request_validation_exception); OpenSearch refuses the
	// line itself (illegal_argument_exception). Both are a whole-request
	// 400, which is what a client acts on; estest names the line.
	"elasticsearch7/bulk_unknown_op": "estest refuses the line as OpenSearch does; Elasticsearch 7.17 answers no requests added",
}

func distributionOf(server string) string {
	if server == "opensearch" {
		return "opensearch"
	}
	return "elasticsearch"
}

func versionOfCapture(t *testing.T, caps map[string]captured) string {
	var root struct {
		Version struct{ Number string } `json:"version"`
	}
	if err := json.Unmarshal(caps["get_root"].Response, &root); err != nil || root.Version.Number == "" {
		t.Fatalf("the capture has no GET / version: %v", err)
	}
	return root.Version.Number
}

func TestReplayRealAnswers(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "real-*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no captured answers in testdata (%v)", err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var caps map[string]captured
		if err := json.Unmarshal(data, &caps); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		server := strings.SplitN(strings.TrimPrefix(filepath.Base(file), "real-"), "-", 2)[0]
		for _, sc := range scenarios {
			cp, ok := caps[sc.Name]
			if !ok {
				t.Errorf("%s has no capture of %s: re-capture", file, sc.Name)
				continue
			}
			t.Run(server+"/"+sc.Name, func(t *testing.T) {
				if why, ok := knownDifferences[server+"/"+sc.Name]; ok {
					t.Logf("not compared: %s (real answer: %d %s)", why, cp.Status, cp.Response)
					return
				}
				es := estest.NewUnstarted()
				// estest answers as the captured server would (its
				// distribution and version: the action keys and
				// parameters it knows).
				es.Distribution, es.Version = distributionOf(server), versionOfCapture(t, caps)
				es.Start()
				defer es.Close()
				if cp.InjectFault {
					var real struct {
						Items []map[string]struct {
							Status int `json:"status"`
							Error  *struct {
								Type   string `json:"type"`
								Reason string `json:"reason"`
							} `json:"error"`
						} `json:"items"`
					}
					if err := json.Unmarshal(cp.Response, &real); err != nil {
						t.Fatal(err)
					}
					n := 0
					es.ItemFault = func(estest.Item) *estest.ItemResult {
						defer func() { n++ }()
						for _, r := range real.Items[n] {
							if r.Error != nil {
								return &estest.ItemResult{Status: r.Status, Type: r.Error.Type, Reason: r.Error.Reason}
							}
						}
						return nil
					}
				}
				index := "replay-" + strings.ReplaceAll(sc.Name, "_", "-")
				st, h, body := send(t, es.URL, cp.Request, index)
				got, want := shape(st, body), shape(cp.Status, cp.Response)
				if cp.Response == nil {
					want = shape(cp.Status, []byte(cp.ResponseText))
				}
				if sc.Name == "get_root" {
					// Elasticsearch >= 7.14 sends it; OpenSearch never does.
					if server == "elasticsearch7" && cp.ElasticProd != h.Get("X-Elastic-Product") {
						t.Errorf("X-Elastic-Product: estest %q, real %q", h.Get("X-Elastic-Product"), cp.ElasticProd)
					}
				}
				if got != want {
					t.Errorf("%s\nestest: %s\nreal:   %s\nreal answer: %s%s", cp.About, got, want, cp.Response, cp.ResponseText)
				}
			})
		}
	}
}
