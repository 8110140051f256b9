package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/filter/drop"
	"github.com/sidelog/sidelog/input"
	"github.com/sidelog/sidelog/output"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/plugins"
)

// genInput emits Lines in batches of Batch, then waits for every ack (or
// the pipeline's abort), as the tail does.
type genConfig struct {
	Lines []string `yaml:"lines"`
	Count int      `yaml:"count"` // generate count lines {"n":i,"level":...}
	Batch int      `yaml:"batch"`
}

type genInput struct {
	cfg     *genConfig
	h       *harness
	emitted *atomic.Int64
	abort   <-chan struct{}
}

func (g *genInput) Run(ctx context.Context, emit input.Emit) error {
	lines := g.cfg.Lines
	for i := range g.cfg.Count {
		lvl := []string{"info", "debug", "warn", "error"}[i%4]
		lines = append(lines, fmt.Sprintf(`{"n":%d,"level":%q}`, i, lvl))
	}
	// left counts the batches not acknowledged, plus one until every
	// batch is emitted; zero is signalled on allAcked.
	var left atomic.Int64
	allAcked := make(chan struct{}, 1)
	release := func() {
		if left.Add(-1) == 0 {
			allAcked <- struct{}{}
		}
	}
	left.Add(1)
	for start := 0; start < len(lines); start += g.cfg.Batch {
		end := min(start+g.cfg.Batch, len(lines))
		batch := make([]*event.Event, 0, end-start)
		left.Add(1)
		n := start / g.cfg.Batch
		ack := event.NewAck(end-start, func() {
			g.h.acked.Store(int64(n), true)
			release()
		})
		for _, l := range lines[start:end] {
			e := &event.Event{Raw: []byte(l), Input: "gen", Time: time.Unix(0, 0)}
			e.SetAck(ack)
			batch = append(batch, e)
		}
		if err := emit(batch); err != nil {
			return err
		}
		g.emitted.Add(int64(end - start))
		if ctx.Err() != nil {
			break
		}
	}
	release()
	if g.h.waiting != nil {
		close(g.h.waiting)
	}
	select {
	case <-allAcked:
		return nil
	case <-g.abort:
		return nil
	}
}

// testParser parses JSON objects with encoding/json.
type testParser struct{}

func (testParser) Parse(e *event.Event) {
	var m map[string]any
	if err := json.Unmarshal(e.Raw, &m); err != nil {
		e.Fields = map[string]any{"message": string(e.Raw), "parse_error": err.Error()}
		e.Flags |= event.ParseFailed
		return
	}
	e.Fields = m
}

// captureOutput records what it is sent; Block holds every Write until
// closed.
type captureConfig struct{}

type capture struct {
	mu     sync.Mutex
	recs   []string
	block  chan struct{}
	writes atomic.Int64
}

func (c *capture) Encode(dst []byte, e *event.Event) ([]byte, error) {
	return event.AppendJSON(dst, e), nil
}

func (c *capture) Write(ctx context.Context, batch [][]byte) error {
	c.writes.Add(1)
	if c.block != nil {
		select {
		case <-c.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range batch {
		c.recs = append(c.recs, string(r))
	}
	return nil
}

func (c *capture) Close(context.Context) error { return nil }
func (c *capture) Keys() ([]string, bool)      { return nil, false }

func (c *capture) records() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.recs...)
}

type harness struct {
	reg      *plugins.Registry
	outputs  map[string]*capture
	emitted  atomic.Int64
	blockOut map[string]chan struct{}
	// acked holds the numbers of the batches whose ack was released.
	acked sync.Map
	// waiting, if set, is closed when the input has emitted everything
	// and waits for its acknowledgements.
	waiting chan struct{}
	// newOutput, if set, makes the outputs of type capture.
	newOutput func(name string) output.Output
	opts      Options
}

func newHarness() *harness {
	h := &harness{reg: plugins.New(), outputs: map[string]*capture{}, blockOut: map[string]chan struct{}{}}
	h.reg.AddInput("gen", plugins.Input{
		Config: func() any { return &genConfig{Batch: 10} },
		New: func(cfg any, env input.Env) (input.Input, error) {
			return &genInput{cfg: cfg.(*genConfig), h: h, emitted: &h.emitted, abort: env.ShutdownDeadline}, nil
		},
	})
	h.reg.AddParser("json", plugins.Parser{New: func(parser.Config, plugins.ParserEnv) (parser.Parser, func() parser.Assembler, error) {
		return testParser{}, nil, nil
	}})
	h.reg.AddOutput("capture", plugins.Output{
		Config: func() any { return &captureConfig{} },
		New: func(cfg any, env plugins.OutputEnv) (output.Output, error) {
			if h.newOutput != nil {
				return h.newOutput(env.Name), nil
			}
			c := &capture{block: h.blockOut[env.Name]}
			h.outputs[env.Name] = c
			return c, nil
		},
	})
	return h
}

func (h *harness) build(t *testing.T, yml string) *Pipeline {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yml), h.reg)
	if err != nil {
		t.Fatal(err)
	}
	opts := h.opts
	opts.Registry = h.reg
	p, err := Build(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRoutingFanOutAndUnrouted(t *testing.T) {
	h := newHarness()
	p := h.build(t, `
inputs:
  - {name: gen, type: gen, count: 100}
outputs:
  - {name: all, type: capture}
  - {name: problems, type: capture, route: 'level in ["warn", "error"]'}
  - {name: errors, type: capture, route: 'level == "error"'}
`)
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	all, problems, errs := h.outputs["all"].records(), h.outputs["problems"].records(), h.outputs["errors"].records()
	if len(all) != 100 || len(problems) != 50 || len(errs) != 25 {
		t.Fatalf("got all=%d problems=%d errors=%d, want 100, 50, 25", len(all), len(problems), len(errs))
	}
	for i, r := range all {
		var m map[string]any
		if err := json.Unmarshal([]byte(r), &m); err != nil || m["n"] != float64(i) {
			t.Fatalf("record %d out of order or broken: %s", i, r)
		}
	}
	for _, r := range errs {
		if !strings.Contains(r, `"level":"error"`) {
			t.Fatalf("errors output got %s", r)
		}
	}
	if u := p.Unrouted("gen"); u != 0 {
		t.Fatalf("unrouted = %d, want 0", u)
	}
}

func TestNoRouteIsCountedAndDropped(t *testing.T) {
	h := newHarness()
	p := h.build(t, `
inputs:
  - {name: gen, type: gen, count: 40}
outputs:
  - {name: errors, type: capture, route: 'level == "error"'}
`)
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(h.outputs["errors"].records()); n != 10 {
		t.Fatalf("errors output got %d records, want 10", n)
	}
	if u := p.Unrouted("gen"); u != 30 {
		t.Fatalf("unrouted = %d, want 30", u)
	}
}

func TestMalformedLineIsKept(t *testing.T) {
	h := newHarness()
	p := h.build(t, `
inputs:
  - {name: gen, type: gen, lines: ['{"ok":true}', 'not json {']}
outputs:
  - {name: all, type: capture}
`)
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := h.outputs["all"].records()
	if len(got) != 2 || !strings.Contains(got[1], `"message":"not json {"`) || !strings.Contains(got[1], `"parse_error"`) {
		t.Fatalf("got %q", got)
	}
}

// A blocked output must stop the reader: with the output blocked, the input
// can emit only what the bounded queues hold; once unblocked, everything
// arrives in order.
func TestBackpressureStopsTheReader(t *testing.T) {
	h := newHarness()
	h.blockOut["slow"] = make(chan struct{})
	const total = 20000
	p := h.build(t, fmt.Sprintf(`
inputs:
  - {name: gen, type: gen, count: %d, batch: 10}
outputs:
  - name: slow
    type: capture
    buffer: {max_bytes: 4KiB}
    batch: {max_events: 10, timeout: 1ms}
`, total))
	done := make(chan error, 1)
	go func() { done <- p.Run(context.Background()) }()

	// Wait until the output is blocked in Write, then until the input has
	// stopped making progress.
	deadline := time.Now().Add(10 * time.Second)
	for h.outputs["slow"] == nil || h.outputs["slow"].writes.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("output never written to")
		}
		time.Sleep(time.Millisecond)
	}
	var last int64 = -1
	for stable := 0; stable < 50; {
		n := h.emitted.Load()
		if n == last {
			stable++
		} else {
			stable, last = 0, n
		}
		time.Sleep(2 * time.Millisecond)
		if time.Now().After(deadline) {
			t.Fatal("input never stopped")
		}
	}
	// Bound: channel (4 batches) + the worker's batch + the buffer (4 KiB of
	// ~25-byte records) + the batch being written + the batch being emitted.
	if last > 400 {
		t.Fatalf("input emitted %d records while the output was blocked: queues are not bounded", last)
	}
	close(h.blockOut["slow"])
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := h.outputs["slow"].records()
	if len(got) != total {
		t.Fatalf("delivered %d, want %d", len(got), total)
	}
	for i, r := range got {
		if !strings.HasPrefix(r, fmt.Sprintf(`{"level":%q,"n":%d}`, []string{"info", "debug", "warn", "error"}[i%4], i)) {
			t.Fatalf("record %d: %s", i, r)
		}
	}
}

func TestShutdownOnCancel(t *testing.T) {
	h := newHarness()
	h.blockOut["stuck"] = make(chan struct{})
	p := h.build(t, `
shutdown_timeout: 200ms
inputs:
  - {name: gen, type: gen, count: 100000, batch: 100}
outputs:
  - {name: stuck, type: capture, buffer: {max_bytes: 4KiB}}
`)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	for h.outputs["stuck"] == nil || h.outputs["stuck"].writes.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the shutdown timeout")
	}
}

func TestProcess(t *testing.T) {
	h := newHarness()
	p := h.build(t, `
inputs:
  - {name: gen, type: gen}
outputs:
  - {name: all, type: capture}
  - {name: errors, type: capture, route: 'level == "error"'}
`)
	got, err := p.Process("gen", "/x.log", [][]byte{[]byte(`{"level":"error","n":1}`), []byte(`{"level":"info","n":2}`)})
	if err != nil {
		t.Fatal(err)
	}
	if len(got["all"]) != 2 || len(got["errors"]) != 1 || string(got["errors"][0]) != `{"level":"error","n":1}` {
		t.Fatalf("got %q", got)
	}
}

// Issue 20: a filter's `name:` is its metrics label; unnamed filters keep
// their position (which changes when a filter is inserted before them).
func TestFilterMetricLabelsByName(t *testing.T) {
	h := newHarness()
	h.reg.AddFilter("drop", drop.Plugin)
	p := h.build(t, `
inputs: [{name: app, type: gen}]
filters:
  - {name: drop-debug, type: drop, when: 'level == "debug"'}
  - {type: drop, when: 'level == "trace"'}
outputs: [{name: out, type: capture}]
`)
	defer p.Close()
	if got := strings.Join(p.Names().Filters, ","); got != "drop-debug,filters[1].drop" {
		t.Fatalf("filter ids %s", got)
	}
	cfg, err := config.Parse("test.yaml", []byte(`
inputs: [{name: app, type: gen}]
filters:
  - {name: x, type: drop}
  - {name: x, type: drop}
outputs: [{name: out, type: capture}]
`), h.reg)
	if err == nil || !strings.Contains(err.Error(), `test.yaml:5: filters[1].name: duplicate filter name "x"`) {
		t.Fatalf("duplicate name: %v %v", err, cfg)
	}
}

// watching is a capture output that sees blocks outside its Writes.
type watching struct {
	*capture
	blocks *delivery.BlockState
	name   string
}

func (w *watching) WatchBlocks(s *delivery.BlockState, output string) { w.blocks, w.name = s, output }

// An output with WatchBlocks is given the pipeline's BlockState (the one
// /status reads) and its name before its first Write.
func TestOutputWatchesBlocks(t *testing.T) {
	h := newHarness()
	h.opts.Blocks = delivery.NewBlockState(nil)
	var w *watching
	h.newOutput = func(name string) output.Output {
		w = &watching{capture: &capture{}}
		return w
	}
	p := h.build(t, `
inputs:
  - {name: gen, type: gen, count: 10}
outputs:
  - {name: bus, type: capture}
`)
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w.blocks != h.opts.Blocks || w.name != "bus" || len(w.records()) != 10 {
		t.Fatalf("WatchBlocks(%p, %q), want (%p, bus); %d records", w.blocks, w.name, h.opts.Blocks, len(w.records()))
	}
}

// checkingOutput fails some of its writes (retried later) and checks every
// record against the line it was encoded from when it is written: the
// memory of encoded batches is reused once the buffer released it
// (buffer.Arena), so a release that came too early would show as records
// overwritten by later ones, most likely in the batches that wait for a
// retry meanwhile.
type checkingOutput struct {
	mu     sync.Mutex
	writes int
	got    map[int]int // n -> times delivered
	bad    []string
}

func (c *checkingOutput) Encode(dst []byte, e *event.Event) ([]byte, error) {
	return event.AppendJSON(dst, e), nil
}

func (c *checkingOutput) Write(ctx context.Context, batch [][]byte) error {
	c.mu.Lock()
	c.writes++
	fail := c.writes%3 == 0
	c.mu.Unlock()
	// Give the pipeline time to encode more batches meanwhile.
	time.Sleep(100 * time.Microsecond)
	if fail {
		return fmt.Errorf("temporary failure")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range batch {
		var m struct {
			N     int    `json:"n"`
			Level string `json:"level"`
		}
		if err := json.Unmarshal(r, &m); err != nil || m.Level != []string{"info", "debug", "warn", "error"}[m.N%4] {
			c.bad = append(c.bad, string(r))
			continue
		}
		c.got[m.N]++
	}
	return nil
}

func (c *checkingOutput) Close(context.Context) error { return nil }
func (c *checkingOutput) Keys() ([]string, bool)      { return nil, false }

func TestReusedBatchMemoryIsNotOverwrittenBeforeDelivery(t *testing.T) {
	h := newHarness()
	outs := map[string]*checkingOutput{}
	h.newOutput = func(name string) output.Output {
		c := &checkingOutput{got: map[int]int{}}
		outs[name] = c
		return c
	}
	const total = 30000
	p := h.build(t, fmt.Sprintf(`
inputs:
  - {name: gen, type: gen, count: %d, batch: 250}
outputs:
  - name: a
    type: capture
    buffer: {type: memory, max_bytes: 64KiB}
    batch: {max_events: 70, timeout: 1ms}
    retry: {initial: 1ms, max: 2ms}
  - name: b
    type: capture
    route: 'level != "debug"'
    buffer: {type: memory, max_bytes: 16KiB, when_full: block}
    batch: {max_events: 300, timeout: 1ms}
    retry: {initial: 1ms, max: 2ms}
`, total))
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"a": total, "b": total * 3 / 4} {
		c := outs[name]
		if len(c.bad) > 0 {
			t.Fatalf("output %s: %d records overwritten, the first: %s", name, len(c.bad), c.bad[0])
		}
		if len(c.got) != want {
			t.Fatalf("output %s: %d distinct records delivered, want %d", name, len(c.got), want)
		}
		for n, k := range c.got {
			if k != 1 {
				t.Fatalf("output %s: record %d delivered %d times", name, n, k)
			}
		}
	}
}
