package datadog

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	dd "github.com/DataDog/datadog-api-client-go/v2/api/datadog"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/output"
	"github.com/sidelog/sidelog/output/datadog/ddtest"
)

// appendJSONString writes exactly what encoding/json writes, jsonLen bytes.
func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 20_000 {
		s := randomString(rng)
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		got := appendJSONString([]byte("x"), s)
		if !bytes.Equal(got[1:], want) {
			t.Fatalf("%q:\n got %s\nwant %s", s, got[1:], want)
		}
		if len(got)-1 != jsonLen(s) {
			t.Fatalf("%q: %d bytes, jsonLen %d", s, len(got)-1, jsonLen(s))
		}
	}
}

// clientItems builds, for ents, what LogsApi.SubmitLog serialises for its
// []HTTPLogItem (the way this output did before it wrote the body itself):
// HTTPLogItem.MarshalJSON (datadogV2/model_http_log_item.go, v2.67.0)
// marshals a map of ddsource, ddtags, hostname, service (each when set),
// message and the additional properties, with the client's encoder. The
// map is built here so that the tests do not compile datadogV2 (one
// package of about 8,500 files).
func clientItems(ents []entry) []map[string]any {
	items := make([]map[string]any, len(ents))
	for k := range ents {
		ent := &ents[k]
		it := map[string]any{"message": ent.msg}
		if ent.source != "" {
			it["ddsource"] = &ent.source
		}
		switch {
		case ent.original && ent.tags != "":
			it["ddtags"] = ent.tags + "," + redatedTag
		case ent.original:
			it["ddtags"] = redatedTag
		case ent.tags != "":
			it["ddtags"] = &ent.tags
		}
		if ent.hostname != "" {
			it["hostname"] = &ent.hostname
		}
		if ent.service != "" {
			it["service"] = &ent.service
		}
		it["timestamp"] = ent.timestamp
		if ent.status != "" {
			it["status"] = ent.status
		}
		if ent.original {
			it["original_timestamp"] = time.Unix(0, ent.unixNano).UTC().Format(originalLayout)
		}
		if ent.flags&flagTruncated != 0 {
			it["truncated"] = true
		}
		items[k] = it
	}
	return items
}

// randomEntries encodes random events (escapes, invalid UTF-8, U+2028, old,
// future, unknown times, truncated) and decodes and stamps them as Write
// does.
func randomEntries(t *testing.T, o *Output, rng *rand.Rand, n int) ([]entry, [][]byte) {
	now := time.Now()
	var ents []entry
	var recs [][]byte
	for range n {
		e := &event.Event{Fields: map[string]any{
			"svc": randomString(rng), "src": randomString(rng), "host": randomString(rng),
			"team": randomString(rng), "level": []string{"info", "WARNING", "3", "", randomString(rng)}[rng.IntN(5)],
			"msg": randomString(rng),
		}}
		if rng.IntN(4) == 0 {
			delete(e.Fields, "svc")
			delete(e.Fields, "level")
		}
		switch rng.IntN(4) {
		case 0:
			e.Time = now.Add(-time.Duration(rng.IntN(3600)) * time.Second)
		case 1:
			e.Time = now.Add(-20 * time.Hour)
		case 2:
			e.Time = now.Add(3 * time.Hour)
		}
		if rng.IntN(5) == 0 {
			e.Flags |= event.Truncated
		}
		rec, err := o.Encode(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
		var ent entry
		if err := decodeFrame(rec, &ent); err != nil {
			t.Fatal(err)
		}
		o.stamp(&ent, now, now.UnixMilli())
		ents = append(ents, ent)
	}
	return ents, recs
}

// The body is byte for byte what the client's SubmitLog would send for the
// same items (its own encoder, as its setBody calls it), compressed or not,
// and its size is the sum of the computed entry sizes that the limits use.
func TestBodyMatchesClient(t *testing.T) {
	srv := ddtest.New(testKey)
	defer srv.Close()
	o := newOutput(t, srv, func(c *Config) {
		c.Service = "{{ svc }}"
		c.Source = "{{ src }}"
		c.Hostname = "{{ host }}"
		c.Tags = []string{"env:<prod>", "team:{{ team }}"}
	})
	rng := rand.New(rand.NewPCG(7, 8))
	var s scratch
	for round := range 50 {
		ents, _ := randomEntries(t, o, rng, 1+rng.IntN(40))
		items := clientItems(ents)
		var want bytes.Buffer
		if err := dd.NewEncoder(&want).Encode(&items); err != nil {
			t.Fatal(err)
		}
		size := 3 + len(ents) - 1
		for _, ent := range ents {
			size += ent.size
		}
		plain, n := s.makeBody(ents, false)
		if !bytes.Equal(plain, want.Bytes()) {
			t.Fatalf("round %d:\n got %s\nwant %s", round, plain, want.Bytes())
		}
		if n != len(plain) || n != size {
			t.Fatalf("round %d: size %d, body %d, computed %d", round, n, len(plain), size)
		}
		z, n := s.makeBody(ents, true)
		zr, err := gzip.NewReader(bytes.NewReader(z))
		if err != nil {
			t.Fatal(err)
		}
		unz, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(unz, want.Bytes()) || n != size {
			t.Fatalf("round %d: gzip body differs (size %d, computed %d)", round, n, size)
		}
	}
}

// A body over several gzip chunks (and an entry larger than a chunk)
// decompresses to the whole body.
func TestGzipBodyChunks(t *testing.T) {
	srv := ddtest.New(testKey)
	defer srv.Close()
	o := newOutput(t, srv, nil)
	big := strings.Repeat("<é>", 60_000)
	var evs []*event.Event
	for i := range 900 {
		m := `{"i":` + string(rune('0'+i%10)) + `,"m":"` + strings.Repeat("x", i) + `"}`
		if i == 450 {
			m = `{"big":"` + big + `"}`
		}
		evs = append(evs, jsonEvent(t, m, time.Now()))
	}
	recs := encode(t, o, evs...)
	if err := o.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	got := srv.Entries()
	if len(got) != len(evs) {
		t.Fatalf("%d entries", len(got))
	}
	for i, g := range got {
		if g.Message != string(evs[i].Raw) {
			t.Fatalf("entry %d differs", i)
		}
	}
	if r := srv.Requests(); len(r) != 1 || r[0].ContentEncoding != "gzip" || r[0].Bytes < 3*len(big) {
		t.Errorf("requests %+v", r)
	}
	if v := srv.Violations(); len(v) > 0 {
		t.Error(v)
	}
}

// The request is the client's: its User-Agent, the key in DD-API-KEY, the
// JSON content type, gzip declared once (the body is one gzip stream of
// the JSON array), Content-Length set.
func TestRequestIsTheClients(t *testing.T) {
	var mu sync.Mutex
	var hdr http.Header
	var raw []byte
	var length int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		hdr, raw, length = r.Header.Clone(), b, r.ContentLength
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "{}")
	}))
	defer sink.Close()
	o := newOutput(t, &ddtest.Server{URL: sink.URL}, nil)
	if err := o.Write(context.Background(), encode(t, o, jsonEvent(t, `{"a":"b"}`, time.Now()))); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	// The client's format, "<name>/<version> (go …; os …; arch …)", with
	// sidelog's name and version.
	_, clientRest, _ := strings.Cut(dd.NewConfiguration().UserAgent, " ")
	if ua := hdr.Get("User-Agent"); ua != "sidelog/dev "+clientRest {
		t.Errorf("User-Agent %q, want %q", ua, "sidelog/dev "+clientRest)
	}
	if hdr.Get("DD-API-KEY") != testKey || hdr.Get("Content-Type") != "application/json" ||
		hdr.Get("Accept") != "application/json" || len(hdr.Values("Content-Encoding")) != 1 || hdr.Get("Content-Encoding") != "gzip" {
		t.Errorf("headers %v", hdr)
	}
	if length != int64(len(raw)) {
		t.Errorf("Content-Length %d, body %d", length, len(raw))
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var arr []map[string]any
	if err := json.Unmarshal(body, &arr); err != nil || len(arr) != 1 || arr[0]["message"] != `{"a":"b"}` {
		t.Errorf("body %s (%v)", body, err)
	}
}

// The API key is redacted before an answer is cut to 300 bytes, so that no
// part of it shows when it straddles the cut.
func TestAPIKeyRedactedBeforeCut(t *testing.T) {
	srv := ddtest.New(testKey)
	defer srv.Close()
	o := newOutput(t, srv, nil)
	srv.Inject(ddtest.Fault{Status: 400, Body: strings.Repeat("x", 290) + testKey})
	err := o.Write(context.Background(), encode(t, o, jsonEvent(t, `{"a":1}`, time.Now())))
	be, ok := err.(*output.BatchError)
	if !ok || len(be.Failed) != 1 {
		t.Fatalf("error %v", err)
	}
	msg := be.Failed[0].Error()
	if strings.Contains(msg, testKey[:8]) || !strings.Contains(msg, "400") || !strings.Contains(msg, "xxxx") {
		t.Errorf("error %q", msg)
	}
}

// Requests go through the proxy named by HTTP_PROXY. Go reads the proxy
// environment once per process and never proxies loopback addresses, so
// the test runs in a child process with HTTP_PROXY set and an endpoint
// whose host name only the proxy (a fake intake on 127.0.0.1) serves.
func TestProxyFromEnvironment(t *testing.T) {
	if os.Getenv("SIDELOG_DD_PROXY_CHILD") != "" {
		o := newOutput(t, &ddtest.Server{URL: "http://intake.invalid"}, nil)
		if err := o.Write(context.Background(), encode(t, o, jsonEvent(t, `{"via":"proxy"}`, time.Now()))); err != nil {
			t.Fatal(err)
		}
		return
	}
	var mu sync.Mutex
	var seen []string
	proxy := ddtest.New(testKey)
	defer proxy.Close()
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Host+" "+r.URL.String())
		mu.Unlock()
		// Forward to the fake intake, which checks and stores the entries.
		req, _ := http.NewRequest(r.Method, proxy.URL+r.URL.Path, r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	defer front.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestProxyFromEnvironment$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SIDELOG_DD_PROXY_CHILD=1", "HTTP_PROXY="+front.URL, "http_proxy="+front.URL, "NO_PROXY=", "no_proxy=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen[0] != "intake.invalid http://intake.invalid/api/v2/logs" {
		t.Errorf("proxy saw %q", seen)
	}
	if e := proxy.Entries(); len(e) != 1 || e[0].Message != `{"via":"proxy"}` {
		t.Errorf("entries %+v", e)
	}
}

// Two Writes run at once (the delivery loop's max_in_flight): both requests
// are open at the same time at the server, and each gets its own body.
func TestConcurrentWrites(t *testing.T) {
	var mu sync.Mutex
	arrived := 0
	both := make(chan struct{})
	var msgs []string
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var arr []struct{ Message string }
		if err := json.NewDecoder(zr).Decode(&arr); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		arrived++
		if arrived == 2 {
			close(both)
		}
		for _, a := range arr {
			msgs = append(msgs, a.Message)
		}
		mu.Unlock()
		select {
		case <-both:
			w.WriteHeader(http.StatusAccepted)
		case <-time.After(10 * time.Second):
			http.Error(w, "the other request never came", http.StatusServiceUnavailable)
		}
	}))
	defer sink.Close()
	o := newOutput(t, &ddtest.Server{URL: sink.URL}, nil)
	if o.InFlight() != 2 {
		t.Fatalf("InFlight %d", o.InFlight())
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		var evs []*event.Event
		for j := range 500 {
			evs = append(evs, jsonEvent(t, `{"w":`+string(rune('0'+i))+`,"j":"`+strings.Repeat("j", j%50)+`"}`, time.Now()))
		}
		recs := encode(t, o, evs...)
		wg.Go(func() { errs[i] = o.Write(context.Background(), recs) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("write %d: %v", i, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	count := map[string]int{}
	for _, m := range msgs {
		count[m[:6]]++
	}
	if count[`{"w":0`] != 500 || count[`{"w":1`] != 500 {
		t.Errorf("received %v", count)
	}
}
