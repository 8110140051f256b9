package datadog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	dd "github.com/DataDog/datadog-api-client-go/v2/api/datadog"

	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/input"
	"github.com/sidelog/sidelog/output"
	"github.com/sidelog/sidelog/output/datadog/ddtest"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/plugins"
)

const testKey = "0123456789abcdef0123456789abcdef"

// newOutput builds an output that sends to srv.
func newOutput(t testing.TB, srv *ddtest.Server, mod func(*Config)) *Output {
	t.Helper()
	c := DefaultConfig()
	c.APIKey = testKey
	c.Endpoint = srv.URL
	c.Hostname = "node-1"
	if mod != nil {
		mod(c)
	}
	o, err := New(c, plugins.OutputEnv{Name: "dd", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close(context.Background()) })
	return o
}

// jsonEvent builds an event the way the json parser does: Raw is the
// object, Fields its content, flagged RawJSON.
func jsonEvent(t testing.TB, raw string, ts time.Time) *event.Event {
	t.Helper()
	e := &event.Event{Raw: []byte(raw), Time: ts, Flags: event.RawJSON}
	if err := json.Unmarshal(e.Raw, &e.Fields); err != nil {
		t.Fatal(err)
	}
	return e
}

func encode(t testing.TB, o *Output, evs ...*event.Event) [][]byte {
	t.Helper()
	var recs [][]byte
	for _, e := range evs {
		b, err := o.Encode(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, b)
	}
	return recs
}

func TestExampleYAMLLoads(t *testing.T) {
	data, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("DD_API_KEY", testKey)
	reg := plugins.New()
	reg.AddOutput("datadog", plugins.Output{
		Config: func() any { return DefaultConfig() },
		New:    func(cfg any, env plugins.OutputEnv) (output.Output, error) { return New(cfg.(*Config), env) },
	})
	// The loader wants an input: a stand-in one, ahead of the example.
	reg.AddInput("tail", plugins.Input{
		Config: func() any {
			return &struct {
				Paths []string `yaml:"paths"`
			}{}
		},
		New: func(any, input.Env) (input.Input, error) { return nil, errors.New("not in this test") },
	})
	reg.AddParser("json", plugins.Parser{New: func(parser.Config, plugins.ParserEnv) (parser.Parser, func() parser.Assembler, error) {
		return nil, nil, errors.New("not in this test")
	}})
	doc := append([]byte("inputs:\n  - {name: app, type: tail, paths: [/x.log]}\n"), data...)
	cfg, err := config.Parse("example.yaml", doc, reg)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Outputs) != 1 {
		t.Fatalf("outputs: %d", len(cfg.Outputs))
	}
	c := cfg.Outputs[0].Plugin.(*Config)
	if c.APIKey != testKey || c.Site != "datadoghq.com" || c.Source != "checkout" ||
		!slices.Equal(c.Tags, []string{"env:prod", "team:{{ team }}"}) || c.StatusKey != "level" ||
		c.Compression != "gzip" || c.AuthErrorBackoff != time.Minute || c.MaxInFlight != 2 {
		t.Fatalf("decoded %+v", c)
	}
	if _, err := New(c, plugins.OutputEnv{Name: "dd"}); err != nil {
		t.Fatal(err)
	}
	// The README shows the example as it is.
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(readme, bytes.TrimSpace(data)) {
		t.Fatal("README.md does not show example.yaml verbatim")
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Config)
		key  string
	}{
		{"no api key", func(c *Config) { c.APIKey = "" }, "api_key"},
		{"key with space", func(c *Config) { c.APIKey = testKey + " x" }, "api_key"},
		{"unknown site", func(c *Config) { c.Site = "datadoghq.org" }, "site"},
		{"endpoint scheme", func(c *Config) { c.Endpoint = "ftp://127.0.0.1:1" }, "endpoint"},
		{"endpoint query", func(c *Config) { c.Endpoint = "http://127.0.0.1:1/?a=b" }, "endpoint"},
		{"compression", func(c *Config) { c.Compression = "zstd" }, "compression"},
		{"service template", func(c *Config) { c.Service = "{{ service " }, "service"},
		{"tag template", func(c *Config) { c.Tags = []string{"ok:1", "x:{{ y"} }, "tags[1]"},
		{"tag comma", func(c *Config) { c.Tags = []string{"a:1,b:2"} }, "tags[0]"},
		{"status key", func(c *Config) { c.StatusKey = "" }, "status_key"},
		{"timeout", func(c *Config) { c.RequestTimeout = 0 }, "request_timeout"},
		{"auth backoff", func(c *Config) { c.AuthErrorBackoff = -1 }, "auth_error_backoff"},
		{"in flight 0", func(c *Config) { c.MaxInFlight = 0 }, "max_in_flight"},
		{"in flight 65", func(c *Config) { c.MaxInFlight = 65 }, "max_in_flight"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.APIKey = testKey
			tc.mod(c)
			err := c.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			var ke *plugins.KeyError
			if !errors.As(err, &ke) || ke.Key != tc.key {
				t.Fatalf("error %q does not name key %s", err, tc.key)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Fatalf("error shows the API key: %v", err)
			}
		})
	}
	c := DefaultConfig()
	c.APIKey = testKey
	for _, site := range Sites {
		c.Site = site
		if err := c.Validate(); err != nil {
			t.Errorf("site %s: %v", site, err)
		}
	}
	c.Site, c.Endpoint = "bogus", "https://proxy.internal:8443/dd/"
	if err := c.Validate(); err != nil {
		t.Errorf("endpoint overrides site: %v", err)
	}
}

// submitLog is the official client's name of the operation (the key of its
// server templates).
const submitLog = "v2.LogsApi.SubmitLog"

// Every site we accept is one the client knows for SubmitLog, and the URL
// the output posts to is the client's for that site
// (https://http-intake.logs.<site>/api/v2/logs), and for an endpoint
// override (the client's second server, "{protocol}://{name}").
func TestSitesMatchClient(t *testing.T) {
	cfg := dd.NewConfiguration()
	clientURL := func(idx int, vars map[string]string) string {
		ctx := context.WithValue(context.Background(), dd.ContextOperationServerIndices, map[string]int{submitLog: idx})
		ctx = context.WithValue(ctx, dd.ContextOperationServerVariables, map[string]map[string]string{submitLog: vars})
		u, err := cfg.ServerURLWithContext(ctx, submitLog)
		if err != nil {
			t.Fatalf("client: %v", err)
		}
		return u + "/api/v2/logs"
	}
	for _, site := range Sites {
		c := DefaultConfig()
		c.APIKey, c.Site = testKey, site
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		want := clientURL(0, map[string]string{"site": site})
		if got := intakeURL(c); got != want || got != "https://http-intake.logs."+site+"/api/v2/logs" {
			t.Errorf("site %s: %s, the client: %s", site, got, want)
		}
	}
	for _, ep := range []string{"http://127.0.0.1:8080", "https://proxy.internal:8443/dd/", "https://proxy.internal/a/b"} {
		c := DefaultConfig()
		c.APIKey, c.Endpoint = testKey, ep
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		proto, name, _ := parseEndpoint(ep)
		want := clientURL(1, map[string]string{"protocol": proto, "name": name})
		if got := intakeURL(c); got != want {
			t.Errorf("endpoint %s: %s, the client: %s", ep, got, want)
		}
	}
}

func TestMapping(t *testing.T) {
	for _, comp := range []string{"gzip", "none"} {
		t.Run(comp, func(t *testing.T) {
			srv := ddtest.New(testKey)
			defer srv.Close()
			o := newOutput(t, srv, func(c *Config) {
				c.Compression = comp
				c.Service = `{{ service ?? "fallback" }}`
				c.Source = "checkout"
				c.Tags = []string{"env:prod", "team:{{ team }}", "ns:{{ kubernetes.namespace }}", "pod:{{ missing }}"}
			})
			ts := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
			raw := `{"level":"WARNING","msg":"disk <80%> & \"full\"","service":"api","team":"a,b","kubernetes":{"namespace":"shop"}}`
			e1 := jsonEvent(t, raw, ts)
			e2 := &event.Event{Raw: []byte("plain text line"), Time: ts} // unparsed
			if err := o.Write(context.Background(), encode(t, o, e1, e2)); err != nil {
				t.Fatal(err)
			}
			got := srv.Entries()
			if len(got) != 2 {
				t.Fatalf("%d entries", len(got))
			}
			g := got[0]
			if g.Message != raw {
				t.Errorf("message %q, want the record JSON verbatim", g.Message)
			}
			want := ddtest.Entry{Message: raw, Service: "api", Ddsource: "checkout", Hostname: "node-1",
				Ddtags: "env:prod,team:a_b,ns:shop", Status: "warn", Timestamp: ts.UnixMilli(), Size: g.Size}
			if g != want {
				t.Errorf("entry\n got %+v\nwant %+v", g, want)
			}
			g = got[1]
			if g.Message != `{"message":"plain text line"}` || g.Service != "fallback" || g.Status != "" || g.Ddtags != "env:prod" {
				t.Errorf("unparsed line: %+v", g)
			}
			reqs := srv.Requests()
			wantEnc := map[string]string{"gzip": "gzip", "none": ""}[comp]
			if len(reqs) != 1 || reqs[0].ContentEncoding != wantEnc || reqs[0].Status != 202 {
				t.Errorf("requests %+v", reqs)
			}
			if st, _ := o.Status(); st != StateOK {
				t.Errorf("state %s", st)
			}
			if v := srv.Violations(); len(v) > 0 {
				t.Error(v)
			}
		})
	}
}

func TestStatusNames(t *testing.T) {
	for in, want := range map[string]string{
		"INFO": "info", "Warning": "warn", "warn": "warn", "ERR": "error", "error": "error", "3": "error",
		"fatal": "emerg", "crit": "critical", "trace": "debug", "DEBUG": "debug", "notice": "notice",
		"ok": "ok", "banana": "banana", "": "",
	} {
		dst := appendStatus([]byte("xx"+in), 2)
		if got := string(dst[2:]); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func TestDefaultHostname(t *testing.T) {
	// A DaemonSet sets NODE_NAME (the node the Datadog Agent reports):
	// it wins over POD_NAME.
	t.Setenv("POD_NAME", "pod-a")
	t.Setenv("NODE_NAME", "node-b")
	if h := DefaultHostname("engine"); h != "node-b" {
		t.Errorf("%q", h)
	}
	t.Setenv("NODE_NAME", "")
	if h := DefaultHostname("engine"); h != "pod-a" {
		t.Errorf("%q", h)
	}
	t.Setenv("POD_NAME", "")
	if h := DefaultHostname("engine"); h != "engine" {
		t.Errorf("%q", h)
	}
	os_, _ := os.Hostname()
	if h := DefaultHostname(""); h != os_ {
		t.Errorf("%q, want %q", h, os_)
	}
}

// The size computed for each entry is exactly what the client sends, so
// the limits hold to the byte.
func TestEntrySizeIsExact(t *testing.T) {
	srv := ddtest.New(testKey)
	defer srv.Close()
	o := newOutput(t, srv, func(c *Config) { c.Service = "{{ svc }}"; c.Tags = []string{"a:<b>"}; c.TooOld = TooOldRedate })
	now := time.Now()
	evs := []*event.Event{
		jsonEvent(t, `{"svc":"x\u2028y","level":"info","m":"<&>\t\u0001é"}`, now),
		{Raw: []byte("bad \xff utf8 \u2029 <tag>"), Time: now.Add(-20 * time.Hour), Flags: event.Truncated},
		{Raw: []byte("no time")},
	}
	recs := encode(t, o, evs...)
	if err := o.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	got := srv.Entries()
	for i, rec := range recs {
		var ent entry
		if err := decodeFrame(rec, &ent); err != nil {
			t.Fatal(err)
		}
		o.stamp(&ent, time.Unix(0, got[i].Timestamp*1e6), got[i].Timestamp)
		if ent.original {
			ent.size += 0 // original_timestamp has a fixed size
		}
		if ent.size != got[i].Size {
			t.Errorf("entry %d: computed %d bytes, sent %d", i, ent.size, got[i].Size)
		}
	}
	if r := srv.Requests()[0]; r.Bytes != 3+got[0].Size+got[1].Size+got[2].Size+2 {
		t.Errorf("request %d bytes", r.Bytes)
	}
}

func TestRequestLimits(t *testing.T) {
	srv := ddtest.New(testKey)
	defer srv.Close()
	o := newOutput(t, srv, nil)
	now := time.Now()
	// 2500 small records: three requests, none over 1000 entries.
	var evs []*event.Event
	for i := range 2500 {
		evs = append(evs, jsonEvent(t, fmt.Sprintf(`{"seq":%d}`, i), now))
	}
	if err := o.Write(context.Background(), encode(t, o, evs...)); err != nil {
		t.Fatal(err)
	}
	reqs := srv.Requests()
	if len(reqs) != 3 || reqs[0].Entries != 1000 || reqs[1].Entries != 1000 || reqs[2].Entries != 500 {
		t.Fatalf("requests %+v", reqs)
	}
	// 12 records of ~840 kB as entries (quotes escaped twice): each request
	// stays under 5,000,000 bytes, and is filled as far as it can be.
	evs = evs[:0]
	for i := range 12 {
		big := strings.Repeat(`ab"c`, 120_000)
		evs = append(evs, jsonEvent(t, fmt.Sprintf(`{"seq":%d,"m":%q}`, i, big), now))
	}
	if err := o.Write(context.Background(), encode(t, o, evs...)); err != nil {
		t.Fatal(err)
	}
	reqs = srv.Requests()[3:]
	total := 0
	for i, r := range reqs {
		total += r.Entries
		if r.Bytes > MaxRequestBytes || (i < len(reqs)-1 && r.Bytes < MaxRequestBytes-MaxEntryBytes) {
			t.Errorf("request of %d bytes, %d entries", r.Bytes, r.Entries)
		}
	}
	if total != 12 || len(reqs) < 3 {
		t.Errorf("%d entries in %d requests", total, len(reqs))
	}
	if v := srv.Violations(); len(v) > 0 {
		t.Fatal(v)
	}
	if s := o.Stats(); s.Delivered != 2512 || s.Truncated != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestTruncation(t *testing.T) {
	srv := ddtest.New(testKey)
	defer srv.Close()
	o := newOutput(t, srv, nil)
	now := time.Now()
	// A 3 MB JSON line: the long field is cut, the record stays JSON.
	long := strings.Repeat("0123456789abcdef\"é", 3_000_000/19)
	raw := fmt.Sprintf(`{"level":"error","msg":%q,"user":"bob"}`, long)
	if len(raw) < 3_000_000 {
		t.Fatalf("line of %d bytes", len(raw))
	}
	// A 3 MB line whose bulk is a nested array: cut as text.
	nested := `{"level":"info","xs":[` + strings.Repeat(`"ü<x>",`, 430_000) + `1]}`
	// A 3 MB plain-text line (parser none).
	plain := &event.Event{Raw: []byte(strings.Repeat("line ", 600_000)), Time: now}
	recs := encode(t, o, jsonEvent(t, raw, now), jsonEvent(t, nested, now), plain)
	if err := o.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	got := srv.Entries()
	if len(got) != 3 {
		t.Fatalf("%d entries", len(got))
	}
	for i, g := range got {
		if g.Size > MaxEntryBytes || g.Size < MaxEntryBytes-200 {
			t.Errorf("entry %d: %d bytes", i, g.Size)
		}
		if !g.Truncated {
			t.Errorf("entry %d not flagged", i)
		}
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(got[0].Message), &rec); err != nil {
		t.Fatalf("cut record is not JSON: %v", err)
	}
	if rec["truncated"] != true || rec["level"] != "error" || rec["user"] != "bob" || !strings.HasPrefix(long, rec["msg"].(string)) {
		t.Errorf("cut record keys %v", slices.Sorted(func(y func(string) bool) {
			for k := range rec {
				if !y(k) {
					return
				}
			}
		}))
	}
	if got[0].Status != "error" {
		t.Errorf("status %q", got[0].Status)
	}
	if !strings.HasPrefix(nested, got[1].Message) || !strings.HasPrefix(got[2].Message, `{"message":"line line`) {
		t.Errorf("text cut is not a prefix")
	}
	if s := o.Stats(); s.Truncated != 3 {
		t.Errorf("truncated %d", s.Truncated)
	}
	if v := srv.Violations(); len(v) > 0 {
		t.Fatal(v)
	}
	// The event itself was not changed (other outputs share it).
	e := jsonEvent(t, raw, now)
	o.Encode(nil, e)
	if e.Fields["msg"] != long || e.Fields["truncated"] != nil || e.Has(event.Modified) {
		t.Error("Encode changed the event")
	}
}

func TestOldAndFutureEvents(t *testing.T) {
	srv := ddtest.New(testKey)
	defer srv.Close()
	o := newOutput(t, srv, func(c *Config) { c.TooOld = TooOldRedate })
	now := time.Now()
	old := now.Add(-20 * time.Hour).Truncate(time.Millisecond)
	future := now.Add(3 * time.Hour).Truncate(time.Millisecond)
	recent := now.Add(-17 * time.Hour).Truncate(time.Millisecond)
	recs := encode(t, o, jsonEvent(t, `{"n":1}`, old), jsonEvent(t, `{"n":2}`, future), jsonEvent(t, `{"n":3}`, recent))
	before := time.Now().UnixMilli()
	if err := o.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	after := time.Now().UnixMilli()
	got := srv.Entries()
	for i, want := range []time.Time{old, future} {
		g := got[i]
		if g.Timestamp < before || g.Timestamp > after {
			t.Errorf("entry %d sent with timestamp %d, not now", i, g.Timestamp)
		}
		ot, err := time.Parse(time.RFC3339Nano, g.OriginalTimestamp)
		if err != nil || !ot.Equal(want) {
			t.Errorf("entry %d original_timestamp %q, want %s", i, g.OriginalTimestamp, want)
		}
	}
	if got[2].Timestamp != recent.UnixMilli() || got[2].OriginalTimestamp != "" || got[2].Ddtags != "" {
		t.Errorf("recent entry %+v", got[2])
	}
	for _, g := range got[:2] {
		if g.Ddtags != "sidelog_redated:true" {
			t.Errorf("re-dated entry's tags %q, want the redated tag", g.Ddtags)
		}
	}
	if s := o.Stats(); s.RetimedOld != 1 || s.RetimedFuture != 1 {
		t.Errorf("stats %+v", s)
	}
}

func classOf(t *testing.T, err error) (output.Class, time.Duration, int) {
	t.Helper()
	var be *output.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("want a BatchError, got %v", err)
	}
	var c output.Class
	var after time.Duration
	first := true
	for _, e := range be.Failed {
		ci, ai := output.Classify(e)
		if first {
			c, after, first = ci, ai, false
		} else if ci != c || ai != after {
			t.Fatalf("records classified differently")
		}
	}
	return c, after, len(be.Failed)
}

func TestAnswers(t *testing.T) {
	cases := []struct {
		name   string
		fault  ddtest.Fault
		class  output.Class
		after  time.Duration
		state  string
		reason string
		block  string // the delivery.Blocked reason ("": not blocked)
	}{
		{"429 with Retry-After", ddtest.Fault{Status: 429, RetryAfter: "7"}, output.Throttled, 7 * time.Second, StateThrottled, "429", ""},
		{"408", ddtest.Fault{Status: 408}, output.Throttled, 0, StateThrottled, "408", ""},
		{"500", ddtest.Fault{Status: 500}, output.Retryable, 0, StateError, "500", ""},
		{"503 with Retry-After", ddtest.Fault{Status: 503, RetryAfter: "3"}, output.Throttled, 3 * time.Second, StateError, "503", ""},
		{"400", ddtest.Fault{Status: 400, Body: `{"errors":["bad payload"]}`}, output.Permanent, 0, StateStarting, "bad payload", ""},
		{"403", ddtest.Fault{Status: 403}, output.Retryable, 0, StateAuthError, "403: invalid API key", ReasonAuthError},
		{"401", ddtest.Fault{Status: 401}, output.Retryable, 0, StateAuthError, "401: missing API key", ReasonAuthError},
		{"404", ddtest.Fault{Status: 404}, output.Retryable, 0, StateError, "404", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := ddtest.New(testKey)
			defer srv.Close()
			o := newOutput(t, srv, func(c *Config) { c.AuthErrorBackoff = 90 * time.Second })
			recs := encode(t, o, jsonEvent(t, `{"a":1}`, time.Now()), jsonEvent(t, `{"a":2}`, time.Now()))
			srv.Inject(tc.fault)
			err := o.Write(context.Background(), recs)
			c, after, n := classOf(t, err)
			if c != tc.class || after != tc.after || n != 2 {
				t.Fatalf("%v: class %v after %v for %d records", err, c, after, n)
			}
			be := err.(*output.BatchError)
			if !strings.Contains(be.Failed[0].Error(), tc.reason) {
				t.Errorf("reason %q lacks %q", be.Failed[0].Error(), tc.reason)
			}
			if st, _ := o.Status(); st != tc.state {
				t.Errorf("state %s, want %s", st, tc.state)
			}
			if len(srv.Entries()) != 0 {
				t.Fatal("a refused request was stored")
			}
			b, blocked := delivery.AsBlocked(be.Failed[0])
			if (tc.block != "") != blocked || (blocked && b.Reason != tc.block) {
				t.Fatalf("blocked %v %+v, want reason %q", blocked, b, tc.block)
			}
			if blocked {
				// No request before auth_error_backoff: the same blocked
				// error at once.
				n := len(srv.Requests())
				if err := o.Write(context.Background(), recs); !errors.Is(err, b) || len(srv.Requests()) != n {
					t.Fatalf("during the backoff: %v, %d requests (was %d)", err, len(srv.Requests()), n)
				}
				o.now = func() time.Time { return time.Now().Add(91 * time.Second) }
			}
			// The next attempt goes through.
			if err := o.Write(context.Background(), recs); err != nil {
				t.Fatal(err)
			}
			if st, msg := o.Status(); st != StateOK || msg != "" {
				t.Errorf("state %s %q after success", st, msg)
			}
		})
	}
}

func TestSplitOn413(t *testing.T) {
	srv := ddtest.New(testKey)
	defer srv.Close()
	o := newOutput(t, srv, nil)
	var evs []*event.Event
	for i := range 40 {
		evs = append(evs, jsonEvent(t, fmt.Sprintf(`{"seq":%d,"pad":%q}`, i, strings.Repeat("x", 1000)), time.Now()))
	}
	srv.SetMaxRequestBytes(12_000) // a proxy with a small limit: ~10 entries fit
	if err := o.Write(context.Background(), encode(t, o, evs...)); err != nil {
		t.Fatal(err)
	}
	got := srv.Entries()
	if len(got) != 40 {
		t.Fatalf("%d entries", len(got))
	}
	for i, g := range got { // order kept
		if !strings.HasPrefix(g.Message, fmt.Sprintf(`{"seq":%d,`, i)) {
			t.Fatalf("entry %d: %.20s", i, g.Message)
		}
	}
	if s := o.Stats(); s.Splits == 0 || s.Delivered != 40 {
		t.Errorf("stats %+v", s)
	}
	// One entry over the proxy's limit: 413 after splitting, permanent,
	// and only for that entry.
	srv.SetMaxRequestBytes(3000)
	recs := encode(t, o, jsonEvent(t, `{"a":1}`, time.Now()), jsonEvent(t, fmt.Sprintf(`{"big":%q}`, strings.Repeat("y", 5000)), time.Now()), jsonEvent(t, `{"a":3}`, time.Now()))
	err := o.Write(context.Background(), recs)
	var be *output.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || be.Failed[1] == nil {
		t.Fatalf("%v", err)
	}
	if c, _ := output.Classify(be.Failed[1]); c != output.Permanent || !strings.Contains(be.Failed[1].Error(), "413") {
		t.Errorf("%v: %v", c, be.Failed[1])
	}
	if len(srv.Entries()) != 42 || o.Stats().Rejected != 1 {
		t.Errorf("%d entries, stats %+v", len(srv.Entries()), o.Stats())
	}
}

// A throttled request stops the batch: later requests are not sent now and
// fail with the same error; earlier ones stay delivered.
func TestThrottleStopsBatch(t *testing.T) {
	srv := ddtest.New(testKey)
	defer srv.Close()
	o := newOutput(t, srv, nil)
	var evs []*event.Event
	for i := range 3000 {
		evs = append(evs, jsonEvent(t, fmt.Sprintf(`{"seq":%d}`, i), time.Now()))
	}
	srv.Inject(ddtest.Fault{}, ddtest.Fault{Status: 429, RetryAfter: "2"})
	err := o.Write(context.Background(), encode(t, o, evs...))
	c, after, n := classOf(t, err)
	if c != output.Throttled || after != 2*time.Second || n != 2000 {
		t.Fatalf("class %v after %v, %d failed", c, after, n)
	}
	if len(srv.Requests()) != 2 || len(srv.Entries()) != 1000 {
		t.Errorf("%d requests, %d stored", len(srv.Requests()), len(srv.Entries()))
	}
	be := err.(*output.BatchError)
	if be.Failed[999] != nil || be.Failed[1000] == nil || be.Failed[2999] == nil {
		t.Error("wrong records failed")
	}
}

func TestAPIKeyNeverShown(t *testing.T) {
	srv := ddtest.New("another-key")
	defer srv.Close()
	var logs bytes.Buffer
	c := DefaultConfig()
	c.APIKey = testKey
	c.Endpoint = srv.URL
	o, err := New(c, plugins.OutputEnv{Name: "dd", Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(context.Background())
	recs := encode(t, o, jsonEvent(t, `{"a":1}`, time.Now()))
	// The server echoes the key it got in its answer.
	srv.Inject(ddtest.Fault{Status: 403, Body: `{"errors":["invalid key ` + testKey + `"]}`})
	err1 := o.Write(context.Background(), recs)
	o.now = func() time.Time { return time.Now().Add(2 * time.Minute) } // past auth_error_backoff
	err2 := o.Write(context.Background(), recs)                         // wrong key: the server's own 403
	for _, err := range []error{err1, err2} {
		be := err.(*output.BatchError)
		if b, ok := delivery.AsBlocked(be.Failed[0]); !ok || b.Reason != ReasonAuthError {
			t.Errorf("not blocked on auth_error: %v", err)
		}
		if strings.Contains(be.Failed[0].Error(), testKey) {
			t.Errorf("error shows the key: %v", be.Failed[0])
		}
	}
	st, msg := o.Status()
	if st != StateAuthError || strings.Contains(msg, testKey) || !strings.Contains(msg, "403") {
		t.Errorf("status %s %q", st, msg)
	}
	if !strings.Contains(logs.String(), "refused the API key") {
		t.Errorf("not logged: %s", logs.String())
	}
	if strings.Contains(logs.String(), testKey) {
		t.Errorf("log shows the key: %s", logs.String())
	}
	if n := strings.Count(logs.String(), "refused the API key"); n != 1 {
		t.Errorf("logged %d times, want once per state change", n)
	}
	if s := o.Stats(); s.AuthErrors != 2 {
		t.Errorf("stats %+v", s)
	}
}

// A request that was sent but got no answer may have been taken: it is
// retried and its entries are counted as possible duplicates.
func TestUnknownOutcome(t *testing.T) {
	srv := ddtest.New(testKey)
	defer srv.Close()
	o := newOutput(t, srv, nil)
	recs := encode(t, o, jsonEvent(t, `{"a":1}`, time.Now()), jsonEvent(t, `{"a":2}`, time.Now()))
	srv.Inject(ddtest.Fault{Drop: true})
	err := o.Write(context.Background(), recs)
	c, _, n := classOf(t, err)
	if c == output.Permanent || n != 2 {
		t.Fatalf("class %v, %d failed", c, n)
	}
	if s := o.Stats(); s.PossibleDuplicates != 2 || s.TransportErrors != 1 {
		t.Errorf("stats %+v", s)
	}
	if err := o.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if len(srv.Entries()) != 4 {
		t.Errorf("%d entries stored", len(srv.Entries()))
	}
	// A request that never reached a server is no duplicate risk. (One
	// written to a kept-alive connection that the server had closed counts
	// as a possible duplicate: the client cannot tell it was not read.)
	srv.Close()
	o2 := newOutput(t, srv, nil)
	if err := o2.Write(context.Background(), recs); err == nil {
		t.Fatal("no error from a closed server")
	}
	if s := o2.Stats(); s.PossibleDuplicates != 0 || s.TransportErrors != 1 {
		t.Errorf("stats %+v", s)
	}
	if st, msg := o2.Status(); st != StateError || !strings.Contains(msg, "request failed") {
		t.Errorf("status %s %q", st, msg)
	}
}

func TestCorruptRecordIsPermanent(t *testing.T) {
	srv := ddtest.New(testKey)
	defer srv.Close()
	o := newOutput(t, srv, nil)
	recs := encode(t, o, jsonEvent(t, `{"a":1}`, time.Now()))
	recs = append(recs, []byte("not a frame"), append([]byte{9}, recs[0][1:]...))
	err := o.Write(context.Background(), recs)
	var be *output.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 2 || be.Failed[0] != nil {
		t.Fatalf("%v", err)
	}
	for _, i := range []int{1, 2} {
		if c, _ := output.Classify(be.Failed[i]); c != output.Permanent {
			t.Errorf("record %d: %v", i, c)
		}
	}
	if len(srv.Entries()) != 1 {
		t.Error("good record not sent")
	}
}

func TestKeys(t *testing.T) {
	srv := ddtest.New(testKey)
	defer srv.Close()
	o := newOutput(t, srv, func(c *Config) {
		c.Service = "{{ service }}"
		c.Tags = []string{"env:prod", "ns:{{ kubernetes.namespace }}"}
		c.StatusKey = "severity"
	})
	keys, all := o.Keys()
	if all || !slices.Equal(keys, []string{"kubernetes", "kubernetes.namespace", "service", "severity"}) {
		t.Errorf("keys %v all %v", keys, all)
	}
}
