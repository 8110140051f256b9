package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidelog/sidelog/api/tap"
	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/metrics"
)

// start runs a server on 127.0.0.1:0 and stops it at the end of the test.
func start(t *testing.T, o Options) *Server {
	t.Helper()
	o.Address = "127.0.0.1:0"
	s := New(o)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, "9.9.9")
	if err != nil {
		t.Fatal(err)
	}
	m.Input("app").Records.Add(5)
	var ready atomic.Bool
	s := start(t, Options{
		Gatherer: reg,
		Ready:    ready.Load,
		Status:   func() any { return m.Snapshot() },
	})
	base := "http://" + s.Addr()

	if code, body, _ := get(t, base+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	if code, _, _ := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before ready = %d, want 503", code)
	}
	ready.Store(true)
	if code, _, _ := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz when ready = %d", code)
	}
	code, body, _ := get(t, base+"/metrics")
	if code != 200 || !strings.Contains(body, `sidelog_input_records_total{input="app"} 5`) || !strings.Contains(body, `sidelog_build_info{goversion=`) {
		t.Fatalf("/metrics = %d\n%s", code, body)
	}
	code, body, hdr := get(t, base+"/status")
	if code != 200 || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("/status = %d %s", code, hdr.Get("Content-Type"))
	}
	var st metrics.Snapshot
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status is not JSON: %v\n%s", err, body)
	}
	if st.Version != "9.9.9" || st.Inputs["app"].Records != 5 {
		t.Fatalf("/status = %s", body)
	}
	if code, _, _ := get(t, base+"/nope"); code != 404 {
		t.Fatalf("unknown path = %d", code)
	}
	// Off by default.
	if code, _, _ := get(t, base+"/debug/pprof/"); code != 404 {
		t.Fatalf("pprof without api.pprof = %d, want 404", code)
	}
	if code, body, _ := get(t, base+"/tap?input=app"); code != 404 || !strings.Contains(body, "api.tap: true") {
		t.Fatalf("tap without api.tap = %d %q", code, body)
	}
	// Only GET.
	resp, err := http.Post(base+"/healthz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /healthz = %d", resp.StatusCode)
	}
}

// /status shows an output answering 403 as failing, while /readyz stays
// ready: a sidecar's readiness must not follow its outputs.
func TestFailingOutputKeepsReady(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, _ := metrics.New(reg, "t")
	es := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "invalid API key", http.StatusForbidden)
	}))
	defer es.Close()
	out := m.Output("es").Wrap(&httpOut{url: es.URL})
	_ = out.Write(context.Background(), [][]byte{[]byte(`{}`)})
	s := start(t, Options{Gatherer: reg, Ready: func() bool { return true }, Status: func() any { return m.Snapshot() }})
	base := "http://" + s.Addr()
	_, body, _ := get(t, base+"/status")
	var st struct {
		Outputs map[string]struct {
			State     string `json:"state"`
			LastError string `json:"last_error"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if o := st.Outputs["es"]; o.State != "failing" || o.LastError != "403 Forbidden: invalid API key" {
		t.Fatalf("/status outputs.es = %+v", o)
	}
	if code, _, _ := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz = %d while an output fails", code)
	}
	_, metricsBody, _ := get(t, base+"/metrics")
	if !strings.Contains(metricsBody, `sidelog_output_state{output="es",state="failing"} 1`) {
		t.Fatalf("metrics do not show the failing state:\n%s", metricsBody)
	}
}

func TestPprofWhenEnabled(t *testing.T) {
	s := start(t, Options{Pprof: true})
	code, body, _ := get(t, "http://"+s.Addr()+"/debug/pprof/")
	if code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("/debug/pprof/ = %d", code)
	}
	code, _, _ = get(t, "http://"+s.Addr()+"/debug/pprof/cmdline")
	if code != 200 {
		t.Fatalf("/debug/pprof/cmdline = %d", code)
	}
}

// tap and pprof answer loopback clients only, even when the API listens on
// every address.
func TestLoopbackOnly(t *testing.T) {
	s := New(Options{Pprof: true, Tap: true, Hub: tap.NewHub()})
	for _, path := range []string{"/debug/pprof/", "/tap?input=app"} {
		for _, tc := range []struct {
			remote string
			want   int
		}{
			{"10.1.2.3:40000", http.StatusForbidden},
			{"[2001:db8::1]:40000", http.StatusForbidden},
			{"[::1]:40000", 0},
			{"127.0.0.1:40000", 0},
		} {
			r := httptest.NewRequest("GET", path, nil)
			r.RemoteAddr = tc.remote
			ctx, cancel := context.WithCancel(r.Context())
			cancel() // a tap stream that reaches its loop ends at once
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, r.WithContext(ctx))
			if tc.want != 0 && w.Code != tc.want {
				t.Errorf("%s from %s = %d, want %d", path, tc.remote, w.Code, tc.want)
			}
			if tc.want == 0 && w.Code == http.StatusForbidden {
				t.Errorf("%s from %s refused", path, tc.remote)
			}
		}
	}
}

func TestDisabledAndBindErrors(t *testing.T) {
	s := New(Options{Address: ""})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.Addr() != "" {
		t.Fatal("a disabled API has an address")
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	taken := start(t, Options{})
	again := New(Options{Address: taken.Addr()})
	if err := again.Start(context.Background()); err == nil || !strings.Contains(err.Error(), taken.Addr()) {
		t.Fatalf("binding a taken port: err = %v", err)
	}
	// Binds exactly where told: 127.0.0.1 is not reachable as another
	// loopback address.
	if _, port, _ := net.SplitHostPort(taken.Addr()); port != "" {
		c, err := net.DialTimeout("tcp", "127.0.0.2:"+port, time.Second)
		if err == nil {
			c.Close()
			t.Fatal("the API listens beyond the address it was given")
		}
	}
}

// A tap client sees the records passing the point that its condition
// accepts, and stops after --limit.
func TestTapStream(t *testing.T) {
	hub := tap.NewHub()
	p := hub.Point(tap.KindOutput, "es")
	hub.Point(tap.KindInput, "app")
	s := start(t, Options{Tap: true, Hub: hub})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Publish until the client has what it wants: it attaches at some
	// point, and only then do records reach it.
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := 0; ctx.Err() == nil; i++ {
			level := "info"
			if i%2 == 1 {
				level = "error"
			}
			p.Publish(&event.Event{Fields: map[string]any{"level": level, "i": i}, Flags: event.Modified})
			if !p.Active() {
				time.Sleep(time.Millisecond) // nobody listens yet; do not spin
			}
		}
	}()
	var out, notices bytes.Buffer
	err := Tap(ctx, TapOptions{Address: s.Addr(), Output: "es", When: `level == "error"`, Limit: 5}, &out, &notices)
	cancel()
	<-pubDone
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("got %d records, want 5:\n%s", len(lines), out.String())
	}
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec["level"] != "error" {
			t.Fatalf("record %q: %v", l, err)
		}
	}
	if p.Active() {
		// The handler unsubscribes as it returns; allow it the moment.
		deadline := time.Now().Add(5 * time.Second)
		for p.Active() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if p.Active() {
			t.Fatal("the subscriber stays after the stream ended")
		}
	}
}

func TestTapErrors(t *testing.T) {
	hub := tap.NewHub()
	hub.Point(tap.KindInput, "app")
	s := start(t, Options{Tap: true, Hub: hub})
	ctx := context.Background()
	var out bytes.Buffer
	err := Tap(ctx, TapOptions{Address: s.Addr(), Input: "app", When: `level ==`}, &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "when:") {
		t.Fatalf("bad condition: err = %v", err)
	}
	err = Tap(ctx, TapOptions{Address: s.Addr(), Input: "nope"}, &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "input:app") {
		t.Fatalf("unknown input: err = %v", err)
	}
	code, _, _ := get(t, "http://"+s.Addr()+"/tap?input=app&output=es")
	if code != 400 {
		t.Fatalf("both input and output = %d", code)
	}
	if err := Tap(ctx, TapOptions{Address: s.Addr()}, &out, io.Discard); err == nil {
		t.Fatal("no point given: no error")
	}
}

// Shutdown ends tap streams instead of waiting for them.
func TestShutdownEndsTapStreams(t *testing.T) {
	hub := tap.NewHub()
	p := hub.Point(tap.KindInput, "app")
	s := New(Options{Address: "127.0.0.1:0", Tap: true, Hub: hub})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- Tap(context.Background(), TapOptions{Address: s.Addr(), Input: "app"}, io.Discard, io.Discard)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !p.Active() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !p.Active() {
		t.Fatal("the client never attached")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a tap attached: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("client: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the client did not return after the server shut down")
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
}

// The client prints drop notices to its notices writer, not as records.
func TestTapClientNotices(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("output") != "es" || r.URL.Query().Get("limit") != "2" {
			http.Error(w, "bad query "+r.URL.RawQuery, 400)
			return
		}
		io.WriteString(w, "{\"a\":1}\n{\"sidelog_tap\":{\"dropped\":7}}\n{\"a\":2}\n")
	}))
	defer srv.Close()
	var out, notices bytes.Buffer
	addr := strings.TrimPrefix(srv.URL, "http://")
	if err := Tap(context.Background(), TapOptions{Address: addr, Output: "es", Limit: 2}, &out, &notices); err != nil {
		t.Fatal(err)
	}
	if out.String() != "{\"a\":1}\n{\"a\":2}\n" {
		t.Fatalf("records = %q", out.String())
	}
	if !strings.Contains(notices.String(), "7 records dropped") {
		t.Fatalf("notices = %q", notices.String())
	}
}

func TestTapURL(t *testing.T) {
	for _, tc := range []struct {
		o    TapOptions
		want string
	}{
		{TapOptions{Address: "0.0.0.0:2020", Input: "app"}, "http://127.0.0.1:2020/tap?input=app"},
		{TapOptions{Address: "[::]:2020", Output: "es", When: `a == "b"`, Limit: 3}, "http://[::1]:2020/tap?limit=3&output=es&when=a+%3D%3D+%22b%22"},
		{TapOptions{Output: "es"}, "http://127.0.0.1:2020/tap?output=es"},
	} {
		got, err := tapURL(tc.o)
		if err != nil || got != tc.want {
			t.Errorf("tapURL(%+v) = %q, %v; want %q", tc.o, got, err, tc.want)
		}
	}
}

func TestTapCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := TapCommand([]string{}, &out, &errb); code != 2 {
		t.Fatalf("no point: exit %d", code)
	}
	if code := TapCommand([]string{"--input", "a", "--output", "b"}, &out, &errb); code != 2 {
		t.Fatalf("two points: exit %d", code)
	}
	// Nobody listens on this port.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	errb.Reset()
	if code := TapCommand([]string{"--input", "a", "--address", addr}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "cannot reach the agent") {
		t.Fatalf("no agent: exit %d, %q", code, errb.String())
	}
	hub := tap.NewHub()
	p := hub.Point(tap.KindInput, "app")
	s := start(t, Options{Tap: true, Hub: hub})
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				p.Publish(&event.Event{Raw: []byte(`{"x":1}`), Flags: event.RawJSON})
				if !p.Active() {
					time.Sleep(time.Millisecond)
				}
			}
		}
	}()
	out.Reset()
	code := TapCommand([]string{"--input", "app", "--limit", "3", "--address", s.Addr()}, &out, &errb)
	close(stop)
	if code != 0 || out.String() != "{\"x\":1}\n{\"x\":1}\n{\"x\":1}\n" {
		t.Fatalf("exit %d, out %q, err %q", code, out.String(), errb.String())
	}
}

// httpOut is a minimal output that posts to a server and classifies its
// answer, as the real outputs do.
type httpOut struct{ url string }

func (h *httpOut) Encode(dst []byte, e *event.Event) ([]byte, error) { return dst, nil }
func (h *httpOut) Close(context.Context) error                       { return nil }
func (h *httpOut) Write(ctx context.Context, batch [][]byte) error {
	req, _ := http.NewRequestWithContext(ctx, "POST", h.url, bytes.NewReader(bytes.Join(batch, []byte("\n"))))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusForbidden {
		return permanent(resp.Status + ": " + strings.TrimSpace(string(body)))
	}
	return nil
}
