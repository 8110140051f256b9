package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/sidelog/sidelog/buffer"
	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/filter"
	"github.com/sidelog/sidelog/output"
)

func newTest(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := New(reg, "1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

// value finds the value of the series name{labels} in a gather; ok is false
// when there is no such series.
func value(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if len(got) != len(labels) {
				continue
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue(), true
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue(), true
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func want(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string, v float64) {
	t.Helper()
	got, ok := value(t, reg, name, labels)
	if !ok {
		t.Fatalf("%s%v: no such series", name, labels)
	}
	if got != v {
		t.Fatalf("%s%v = %v, want %v", name, labels, got, v)
	}
}

func TestHotPathCountersAreExported(t *testing.T) {
	m, reg := newTest(t)
	in := m.Input("app")
	in.Records.Add(10)
	in.Bytes.Add(1234)
	in.ParseErrors.Inc()
	in.Truncated.Add(2)
	in.Unrouted.Add(3)
	in.RouteErrors.Inc()
	if m.Input("app") != in {
		t.Fatal("Input(name) must return the same counters for the same name")
	}
	f := m.Filter("filters[0].drop")
	f.Records.Add(7)
	f.Dropped.Add(4)
	f.Errors.Inc()
	o := m.Output("es")
	o.RecordsIn.Add(3)
	o.BytesIn.Add(300)
	o.EncodeErrors.Inc()

	in1 := map[string]string{"input": "app"}
	want(t, reg, "sidelog_input_records_total", in1, 10)
	want(t, reg, "sidelog_input_bytes_total", in1, 1234)
	want(t, reg, "sidelog_input_parse_errors_total", in1, 1)
	want(t, reg, "sidelog_input_truncated_total", in1, 2)
	want(t, reg, "sidelog_input_unrouted_total", in1, 3)
	want(t, reg, "sidelog_input_route_errors_total", in1, 1)
	fl := map[string]string{"filter": "filters[0].drop"}
	want(t, reg, "sidelog_filter_records_total", fl, 7)
	want(t, reg, "sidelog_filter_dropped_total", fl, 4)
	want(t, reg, "sidelog_filter_errors_total", fl, 1)
	out := map[string]string{"output": "es"}
	want(t, reg, "sidelog_output_records_in_total", out, 3)
	want(t, reg, "sidelog_output_bytes_in_total", out, 300)
	want(t, reg, "sidelog_output_encode_errors_total", out, 1)
	want(t, reg, "sidelog_output_state", map[string]string{"output": "es", "state": "starting"}, 1)
	want(t, reg, "sidelog_output_state", map[string]string{"output": "es", "state": "ok"}, 0)

	// Dropped, by component and reason.
	want(t, reg, "sidelog_dropped_records_total", map[string]string{"component": "input", "name": "app", "reason": "unrouted"}, 3)
	want(t, reg, "sidelog_dropped_records_total", map[string]string{"component": "filter", "name": "filters[0].drop", "reason": "filtered"}, 4)
	want(t, reg, "sidelog_dropped_records_total", map[string]string{"component": "output", "name": "es", "reason": "encode_error"}, 1)

	want(t, reg, "sidelog_build_info", map[string]string{"version": "1.2.3", "goversion": goVersion}, 1)
	if _, ok := value(t, reg, "process_resident_memory_bytes", map[string]string{}); !ok {
		t.Error("the process collector is not registered")
	}
}

func TestConcurrentCounting(t *testing.T) {
	m, reg := newTest(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := m.Input("app") // resolved concurrently
			for range 1000 {
				in.Records.Inc()
			}
		}()
	}
	// Scrape while counting: must not race or fail.
	for range 5 {
		if _, err := reg.Gather(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	want(t, reg, "sidelog_input_records_total", map[string]string{"input": "app"}, 8000)
}

func TestPullGauges(t *testing.T) {
	m, reg := newTest(t)
	oldest := time.Now().Add(-90 * time.Second)
	m.RegisterBuffer("es", func() buffer.Stats {
		return buffer.Stats{Records: 42, Bytes: 4200, OldestUnacked: oldest, Dropped: 5, Corrupt: 2,
			CorruptBytes: 99, NoSpace: 3, IOErrors: 1, Stalled: true, Segments: 4, InFlight: 2}
	})
	m.RegisterTail("app", func() TailStats {
		return TailStats{OpenFiles: 2, Rotations: 3, Truncations: 1, OpenErrors: 4,
			LostBytes: map[string]int64{"truncated": 700, "line_cut": 12, "read_error": 0}, Files: []FileStats{
				{Path: "/var/log/a.log", Size: 1000, Offset: 400},
				{Path: "/var/log/b.log", Size: 50, Offset: 50},
				{Path: "/var/log/c.log", Size: 10, Offset: 20}, // truncated since the last read: no negative lag
			}}
	})
	m.RegisterFilterCounters("filters[1].throttle", func() []filter.Count {
		return []filter.Count{{Name: "throttled", Value: 17}}
	})
	es := map[string]string{"output": "es"}
	want(t, reg, "sidelog_buffer_records", es, 42)
	want(t, reg, "sidelog_buffer_bytes", es, 4200)
	want(t, reg, "sidelog_buffer_segments", es, 4)
	want(t, reg, "sidelog_buffer_in_flight_batches", es, 2)
	want(t, reg, "sidelog_buffer_stalled", es, 1)
	want(t, reg, "sidelog_buffer_no_space_errors_total", es, 3)
	want(t, reg, "sidelog_buffer_io_errors_total", es, 1)
	want(t, reg, "sidelog_buffer_corrupt_bytes_total", es, 99)
	want(t, reg, "sidelog_dropped_records_total", map[string]string{"component": "output", "name": "es", "reason": "buffer_full"}, 5)
	want(t, reg, "sidelog_dropped_records_total", map[string]string{"component": "output", "name": "es", "reason": "corrupt"}, 2)
	age, _ := value(t, reg, "sidelog_buffer_oldest_unacked_age_seconds", es)
	if age < 90 || age > 120 {
		t.Fatalf("oldest unacked age = %v, want about 90s", age)
	}
	app := map[string]string{"input": "app"}
	want(t, reg, "sidelog_input_open_files", app, 2)
	want(t, reg, "sidelog_input_rotations_total", app, 3)
	want(t, reg, "sidelog_input_file_truncations_total", app, 1)
	want(t, reg, "sidelog_input_lag_bytes", app, 600)
	// Issue 14: every loss by reason, open failures.
	want(t, reg, "sidelog_input_lost_bytes_total", map[string]string{"input": "app", "reason": "truncated"}, 700)
	want(t, reg, "sidelog_input_lost_bytes_total", map[string]string{"input": "app", "reason": "line_cut"}, 12)
	want(t, reg, "sidelog_input_lost_bytes_total", map[string]string{"input": "app", "reason": "read_error"}, 0)
	want(t, reg, "sidelog_input_open_errors_total", app, 4)
	// Issue 20: per-file series are opt-in (cardinality in a DaemonSet).
	if _, ok := value(t, reg, "sidelog_input_file_lag_bytes", map[string]string{"input": "app", "path": "/var/log/a.log"}); ok {
		t.Fatal("per-file lag exported without metrics.per_file_lag")
	}
	m.SetPerFileLag(true)
	want(t, reg, "sidelog_input_file_lag_bytes", map[string]string{"input": "app", "path": "/var/log/a.log"}, 600)
	want(t, reg, "sidelog_input_file_lag_bytes", map[string]string{"input": "app", "path": "/var/log/c.log"}, 0)
	want(t, reg, "sidelog_filter_events_total", map[string]string{"filter": "filters[1].throttle", "kind": "throttled"}, 17)

	// An empty buffer has no age.
	m.RegisterBuffer("es", func() buffer.Stats { return buffer.Stats{} })
	want(t, reg, "sidelog_buffer_oldest_unacked_age_seconds", es, 0)
}

// A memory buffer, the real thing, seen through RegisterBuffer.
func TestRealMemoryBuffer(t *testing.T) {
	m, reg := newTest(t)
	b := buffer.NewMemory(1<<20, "block")
	m.RegisterBuffer("out", b.Stats)
	ack := event.NewAck(2, nil)
	e1, e2 := &event.Event{}, &event.Event{}
	e1.SetAck(ack)
	e2.SetAck(ack)
	if err := b.Write(context.Background(), []buffer.Record{{Data: []byte("abc"), Ack: e1.Releaser()}, {Data: []byte("defg"), Ack: e2.Releaser()}}); err != nil {
		t.Fatal(err)
	}
	want(t, reg, "sidelog_buffer_records", map[string]string{"output": "out"}, 2)
	want(t, reg, "sidelog_buffer_bytes", map[string]string{"output": "out"}, 7)
}

type fakeOut struct {
	err error
}

func (f *fakeOut) Encode(dst []byte, e *event.Event) ([]byte, error) { return dst, nil }
func (f *fakeOut) Write(ctx context.Context, b [][]byte) error       { return f.err }
func (f *fakeOut) Close(context.Context) error                       { return nil }

func TestWrapCountsDeliveryAndState(t *testing.T) {
	m, reg := newTest(t)
	om := m.Output("es")
	inner := &fakeOut{}
	w := om.Wrap(inner)
	batch := [][]byte{[]byte("aaaa"), []byte("bb"), []byte("c")}
	es := map[string]string{"output": "es"}
	st := func(s string) map[string]string { return map[string]string{"output": "es", "state": s} }

	if err := w.Write(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	want(t, reg, "sidelog_output_records_out_total", es, 3)
	want(t, reg, "sidelog_output_bytes_out_total", es, 7)
	want(t, reg, "sidelog_output_state", st("ok"), 1)
	want(t, reg, "sidelog_output_write_duration_seconds", es, 1)
	if om.State().LastSuccess.IsZero() {
		t.Fatal("LastSuccess not set after a successful write")
	}

	// One record throttled, one permanent, one delivered.
	inner.err = &output.BatchError{Failed: map[int]error{
		0: output.ThrottledError(errors.New("429 Too Many Requests"), time.Second),
		2: output.PermanentError(errors.New("400 mapper_parsing_exception")),
	}}
	if err := w.Write(context.Background(), batch); err == nil {
		t.Fatal("the wrapper must return the output's error")
	}
	want(t, reg, "sidelog_output_records_out_total", es, 4)
	want(t, reg, "sidelog_output_bytes_out_total", es, 9)
	want(t, reg, "sidelog_output_retries_total", es, 1)
	want(t, reg, "sidelog_output_errors_total", map[string]string{"output": "es", "class": "throttled"}, 1)
	want(t, reg, "sidelog_output_errors_total", map[string]string{"output": "es", "class": "permanent"}, 1)
	want(t, reg, "sidelog_output_errors_total", map[string]string{"output": "es", "class": "retryable"}, 0)
	want(t, reg, "sidelog_output_state", st("partial"), 1)
	if s := om.State(); s.LastError != "429 Too Many Requests" {
		t.Fatalf("last error = %q", s.LastError)
	}

	// The whole batch refused: 403.
	inner.err = output.PermanentError(errors.New("403 Forbidden: invalid API key"))
	_ = w.Write(context.Background(), batch)
	want(t, reg, "sidelog_output_state", st("failing"), 1)
	want(t, reg, "sidelog_output_state", st("ok"), 0)
	want(t, reg, "sidelog_output_retries_total", es, 1) // permanent: not retried
	if s := om.State(); s.LastError != "403 Forbidden: invalid API key" || s.State != StateFailing {
		t.Fatalf("state = %+v", s)
	}

	// Connection refused: retryable, every record retried.
	inner.err = errors.New("dial tcp 127.0.0.1:9200: connection refused")
	_ = w.Write(context.Background(), batch)
	want(t, reg, "sidelog_output_retries_total", es, 4)
	want(t, reg, "sidelog_output_errors_total", map[string]string{"output": "es", "class": "retryable"}, 1)

	// Throttled as a whole.
	inner.err = output.ThrottledError(errors.New("429"), 0)
	_ = w.Write(context.Background(), batch)
	want(t, reg, "sidelog_output_state", st("throttled"), 1)

	// Shutdown: a write cut by its context changes nothing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	inner.err = context.Canceled
	_ = w.Write(ctx, batch)
	want(t, reg, "sidelog_output_requests_total", es, 5)
	want(t, reg, "sidelog_output_state", st("throttled"), 1)

	// Back to normal.
	inner.err = nil
	_ = w.Write(context.Background(), batch[:1])
	want(t, reg, "sidelog_output_state", st("ok"), 1)
	if s := om.State(); s.LastError != "" {
		t.Fatalf("last error kept after a success: %q", s.LastError)
	}
}

type fakeDL struct{ err error }

func (f *fakeDL) Write(string, [][]byte, []string) error { return f.err }

func TestWrapDeadLetter(t *testing.T) {
	m, reg := newTest(t)
	om := m.Output("es")
	if om.WrapDeadLetter(nil) != nil {
		t.Fatal("a nil dead letter must stay nil")
	}
	dl := &fakeDL{}
	w := om.WrapDeadLetter(dl)
	if err := w.Write("es", [][]byte{{1}, {2}}, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	dl.err = errors.New("disk full")
	if err := w.Write("es", [][]byte{{1}}, []string{"a"}); err == nil {
		t.Fatal("error not passed on")
	}
	want(t, reg, "sidelog_output_dead_lettered_total", map[string]string{"output": "es"}, 2)
	want(t, reg, "sidelog_dropped_records_total", map[string]string{"component": "output", "name": "es", "reason": "dead_lettered"}, 2)
}

func TestPruneForgetsRemovedComponents(t *testing.T) {
	m, reg := newTest(t)
	m.Input("old").Records.Inc()
	m.Input("kept").Records.Add(5)
	m.Output("gone").Wrap(&fakeOut{}).Write(context.Background(), [][]byte{{1}})
	m.RegisterBuffer("gone", func() buffer.Stats { return buffer.Stats{Records: 1} })
	called := false
	m.RegisterTail("old", func() TailStats { called = true; return TailStats{} })
	m.Prune(Names{Inputs: []string{"kept"}})
	if _, ok := value(t, reg, "sidelog_input_records_total", map[string]string{"input": "old"}); ok {
		t.Fatal("removed input still reported")
	}
	if _, ok := value(t, reg, "sidelog_buffer_records", map[string]string{"output": "gone"}); ok {
		t.Fatal("removed output's buffer still reported")
	}
	if _, ok := value(t, reg, "sidelog_output_write_duration_seconds", map[string]string{"output": "gone"}); ok {
		t.Fatal("removed output's histogram still reported")
	}
	if called {
		t.Fatal("a pruned tail function was called")
	}
	want(t, reg, "sidelog_input_records_total", map[string]string{"input": "kept"}, 5)
}

func TestReloadCounters(t *testing.T) {
	m, reg := newTest(t)
	m.Reloaded(false)
	m.Reloaded(true)
	m.Reloaded(true)
	want(t, reg, "sidelog_config_reloads_total", map[string]string{"result": "success"}, 2)
	want(t, reg, "sidelog_config_reloads_total", map[string]string{"result": "failure"}, 1)
	ts, _ := value(t, reg, "sidelog_config_last_reload_success_timestamp_seconds", map[string]string{})
	if d := time.Since(time.Unix(int64(ts), 0)); d < 0 || d > time.Minute {
		t.Fatalf("last reload timestamp is %v old", d)
	}
}

func TestNilMetricsIsUsable(t *testing.T) {
	var m *Metrics
	m.Input("a").Records.Inc()
	m.Filter("f").Dropped.Inc()
	om := m.Output("o")
	w := om.Wrap(&fakeOut{})
	if err := w.Write(context.Background(), [][]byte{{1}}); err != nil {
		t.Fatal(err)
	}
	if om.RecordsOut.Value() != 1 {
		t.Fatal("a detached output's counters must still count")
	}
	m.RegisterBuffer("o", nil)
	m.Prune(Names{})
	m.Reloaded(true)
	if s := m.Snapshot(); len(s.Outputs) != 0 {
		t.Fatal("nil snapshot not empty")
	}
}

func TestSnapshot(t *testing.T) {
	m, _ := newTest(t)
	m.Input("app").Records.Add(3)
	m.RegisterTail("app", func() TailStats {
		return TailStats{OpenFiles: 1, Files: []FileStats{{Path: "x", Size: 10, Offset: 4}}}
	})
	om := m.Output("es")
	om.Wrap(&fakeOut{err: output.PermanentError(errors.New("403 Forbidden"))}).Write(context.Background(), [][]byte{{1}})
	m.RegisterBuffer("es", func() buffer.Stats {
		return buffer.Stats{Records: 9, Bytes: 90, OldestUnacked: time.Now().Add(-time.Minute)}
	})
	s := m.Snapshot()
	if s.Version != "1.2.3" {
		t.Fatalf("version %q", s.Version)
	}
	if in := s.Inputs["app"]; in.Records != 3 || in.OpenFiles != 1 || in.LagBytes != 6 {
		t.Fatalf("input snapshot %+v", in)
	}
	o := s.Outputs["es"]
	if o.State != "failing" || o.LastError != "403 Forbidden" || o.BufferedRecords != 9 || o.BufferedBytes != 90 || o.OldestUnackedSeconds < 59 || o.LastSuccess != nil {
		t.Fatalf("output snapshot %+v", o)
	}
}

// The exposition passes Prometheus' own linter (names, units, help).
func TestLint(t *testing.T) {
	m, reg := newTest(t)
	m.Input("a").Records.Inc()
	m.Filter("f").Records.Inc()
	m.Output("o").Wrap(&fakeOut{}).Write(context.Background(), [][]byte{{1}})
	m.RegisterBuffer("o", func() buffer.Stats { return buffer.Stats{} })
	m.RegisterTail("a", func() TailStats { return TailStats{} })
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	probs, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range probs {
		if strings.HasPrefix(p.Metric, "go_") || strings.HasPrefix(p.Metric, "process_") {
			continue
		}
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// Every series is documented in docs/operations.md.
func TestEveryMetricIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"sidelog_output_write_duration_seconds"}
	for _, d := range allDescs {
		s := d.String() // Desc{fqName: "name", ...}
		i := strings.Index(s, `fqName: "`)
		rest := s[i+len(`fqName: "`):]
		names = append(names, rest[:strings.IndexByte(rest, '"')])
	}
	for _, n := range names {
		if !strings.Contains(string(doc), "`"+n+"`") {
			t.Errorf("docs/operations.md does not document `%s`", n)
		}
	}
}

func BenchmarkCounterAdd(b *testing.B) {
	m, _ := New(prometheus.NewRegistry(), "b")
	in := m.Input("app")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			in.Records.Add(1)
			in.Bytes.Add(200)
		}
	})
}

func BenchmarkScrape(b *testing.B) {
	r := prometheus.NewRegistry()
	m, _ := New(r, "b")
	for _, n := range []string{"a", "b", "c", "d"} {
		m.Input(n).Records.Inc()
		m.Output(n).RecordsIn.Inc()
		m.RegisterBuffer(n, func() buffer.Stats { return buffer.Stats{Records: 1} })
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

// A blocked output shows in /status (state blocked, each block's key,
// reason and since) and in sidelog_output_blocked, 0 once it ended.
func TestOutputBlocked(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg, "test")
	if err != nil {
		t.Fatal(err)
	}
	bs := delivery.NewBlockState(nil)
	m.SetBlocks(bs)
	m.Output("es")
	bs.Enter("es", &delivery.BlockedError{Key: "app-1", Reason: "cluster_block_exception", Err: errors.New("index [app-1] blocked by: [FORBIDDEN/8/index write (api)]")})
	s := m.Snapshot().Outputs["es"]
	if s.State != StateBlocked || len(s.Blocked) != 1 || s.Blocked[0].Key != "app-1" || s.Blocked[0].Reason != "cluster_block_exception" || s.Blocked[0].Since.IsZero() || !strings.Contains(s.LastError, "FORBIDDEN/8") {
		t.Fatalf("status while blocked: %+v", s)
	}
	j, _ := json.Marshal(s)
	if !strings.Contains(string(j), `"blocked":[{"key":"app-1","reason":"cluster_block_exception","message":"index [app-1] blocked by: [FORBIDDEN/8/index write (api)]","since":`) {
		t.Fatalf("status JSON: %s", j)
	}
	lbl := map[string]string{"output": "es", "reason": "cluster_block_exception"}
	if v, ok := value(t, reg, "sidelog_output_blocked", lbl); !ok || v != 1 {
		t.Fatalf("gauge %v", v)
	}
	bs.Exit("es", "app-1")
	if s := m.Snapshot().Outputs["es"]; s.State == StateBlocked || len(s.Blocked) != 0 {
		t.Fatalf("status after: %+v", s)
	}
	if v, ok := value(t, reg, "sidelog_output_blocked", lbl); !ok || v != 0 {
		t.Fatalf("gauge after %v", v)
	}
}

type countingOut struct{ counts []output.Count }

func (c countingOut) Counts() []output.Count { return c.counts }

// An output's own counters (output.Counter) are in
// sidelog_output_events_total and /status; those it drops on purpose also
// in sidelog_dropped_records_total.
func TestOutputCounters(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg, "test")
	if err != nil {
		t.Fatal(err)
	}
	m.Output("dd")
	out := countingOut{[]output.Count{{Name: "possible_duplicates", Value: 7}, {Name: "too_old_dropped", Value: 3, Dropped: true}}}
	m.RegisterOutputCounters("dd", out.Counts)
	want(t, reg, "sidelog_output_events_total", map[string]string{"output": "dd", "kind": "possible_duplicates"}, 7)
	want(t, reg, "sidelog_output_events_total", map[string]string{"output": "dd", "kind": "too_old_dropped"}, 3)
	want(t, reg, "sidelog_dropped_records_total", map[string]string{"component": "output", "name": "dd", "reason": "too_old_dropped"}, 3)
	if _, ok := value(t, reg, "sidelog_dropped_records_total", map[string]string{"component": "output", "name": "dd", "reason": "possible_duplicates"}); ok {
		t.Error("possible_duplicates counted as dropped")
	}
	if c := m.Snapshot().Outputs["dd"].Counters; c["possible_duplicates"] != 7 || c["too_old_dropped"] != 3 {
		t.Fatalf("/status counters %v", c)
	}
	m.Prune(Names{})
	if _, ok := value(t, reg, "sidelog_output_events_total", map[string]string{"output": "dd", "kind": "possible_duplicates"}); ok {
		t.Error("pruned output still reported")
	}
}
