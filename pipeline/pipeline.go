// Package pipeline wires the stages together and runs them:
//
//	input ──batches──▶ worker (parse, filters, route, encode) ──▶ buffer per output ──▶ delivery.Runner ──▶ output
//
// Every queue is bounded: an input's channel holds a few read batches, each
// output's buffer is bounded in bytes, so a slow output fills its buffer,
// blocks the worker, which blocks the input's emit, which stops reading the
// file: the files themselves hold the backlog.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sidelog/sidelog/api/tap"
	"github.com/sidelog/sidelog/buffer"
	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/expression"
	"github.com/sidelog/sidelog/filter"
	"github.com/sidelog/sidelog/input"
	"github.com/sidelog/sidelog/metrics"
	"github.com/sidelog/sidelog/output"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/parser/build"
	"github.com/sidelog/sidelog/plugins"
)

// Options are the engine's settings that do not come from the config file.
type Options struct {
	Registry   *plugins.Registry
	Logger     *slog.Logger
	ExitOnEOF  bool
	InstanceID string
	Hostname   string
	// Version is the agent's version, for outputs that name the agent.
	Version string
	// NewBuffer opens an output's buffer; nil: memory buffers.
	NewBuffer func(o *config.Output, defaultType string) (buffer.Buffer, error)
	// DeadLetter receives permanently failed records; may be nil.
	DeadLetter func(o *config.Output) delivery.DeadLetter
	// Metrics receives the pipeline's counters; nil: none are exported.
	Metrics *metrics.Metrics
	// Blocks receives the outputs' blocked states (nil: one per pipeline).
	Blocks *delivery.BlockState
	// Tap is the hub `sidelog tap` subscribes to: records are published at
	// "input:<name>" after parsing and at "output:<name>" once routed.
	Tap *tap.Hub
	// Started is called once Run has opened every buffer and started every
	// input (readiness).
	Started func()
}

// BuildParser builds an input's parser and its per-file assembler factory.
var BuildParser = build.Build

// Pipeline is a built, runnable pipeline.
type Pipeline struct {
	cfg     *config.Config
	opts    Options
	log     *slog.Logger
	inputs  []*inputStage
	filters []*filterStage
	outputs []*outputStage
	// abortCtx is cancelled when a shutdown passes shutdown_timeout: emit
	// fails, workers stop, and inputs (Env.ShutdownDeadline) stop waiting
	// for acknowledgements.
	abortCtx  context.Context
	abortWork context.CancelFunc
	// steer is the first filter that steers lines before parsing (the
	// kubernetes filter with api), steerStage its stage; nil: none.
	steer          filter.Steerer
	steerStage     *filterStage
	unknownParsers sync.Map
}

// abortGrace is how long Run waits, once it aborted a shutdown at
// shutdown_timeout, for inputs and delivery loops to return. Everything of
// the engine returns at once on abort; the grace only bounds a plugin that
// ignores it (an output blocked in a write(2) to a full pipe): Run logs it,
// leaves it behind and returns.
var abortGrace = 2 * time.Second

type inputStage struct {
	name   string
	in     input.Input
	parser parser.Parser
	newAsm func() parser.Assembler
	// maxLine is the input's max_line_bytes (for Process).
	maxLine int
	// unrouted counts records that matched no output's route.
	unrouted atomic.Int64
	m        *metrics.InputMetrics
	tap      *tap.Point
	recycle  input.Recycler // nil unless the input reuses event memory
	// named are the config's named parsers built for this input, for
	// lines a steering filter gives to one of them.
	named map[string]parser.Parser
}

type filterStage struct {
	id   string
	when *expression.Program
	f    filter.Filter
	m    *metrics.FilterMetrics
}

type outputStage struct {
	name   string
	route  *expression.Program
	out    output.Output
	buf    buffer.Buffer
	runner *delivery.Runner
	m      *metrics.OutputMetrics
	tap    *tap.Point
	dl     delivery.DeadLetter // nil: none configured
	// arenas: the memory of encoded batches, reused once the buffer
	// released it (see buffer.Arena).
	arenas buffer.ArenaPool
}

// Build creates every plugin of cfg. It starts nothing.
func Build(cfg *config.Config, opts Options) (*Pipeline, error) {
	if opts.Registry == nil {
		opts.Registry = plugins.Default
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Hostname == "" {
		opts.Hostname, _ = os.Hostname()
	}
	reg := opts.Registry
	p := &Pipeline{cfg: cfg, opts: opts, log: opts.Logger}
	p.abortCtx, p.abortWork = context.WithCancel(context.Background())
	var errs []error

	keys, allKeys := map[string]bool{}, false
	use := func(ks []string, all bool) {
		allKeys = allKeys || all
		for _, k := range ks {
			keys[k] = true
		}
	}
	for i := range cfg.Filters {
		fc := &cfg.Filters[i]
		plug, _ := reg.Filter(fc.Type)
		id := fmt.Sprintf("filters[%d].%s", i, fc.Type)
		if fc.Name != "" {
			id = fc.Name // a stable metrics label: inserting a filter does not rename it
		}
		f, err := plug.New(fc.Plugin, plugins.FilterEnv{ID: id, Logger: opts.Logger.With("filter", id)})
		if err != nil {
			errs = append(errs, cfg.EntryError("filters", i, err))
			continue
		}
		when := fc.WhenProgram
		if wt, ok := f.(filter.WhenTaker); ok {
			// The filter evaluates `when` itself (keep, redact).
			if err := wt.TakeWhen(fc.WhenProgram); err != nil {
				errs = append(errs, cfg.EntryError("filters", i, err))
				continue
			}
			if when != nil {
				use(when.Keys())
			}
			when = nil
		} else if when != nil {
			use(when.Keys())
		}
		if ku, ok := f.(plugins.KeyUser); ok {
			use(ku.Keys())
		} else {
			allKeys = true
		}
		if fc, ok := f.(filter.Counter); ok {
			opts.Metrics.RegisterFilterCounters(id, fc.Counters)
		}
		p.filters = append(p.filters, &filterStage{id: id, when: when, f: f, m: opts.Metrics.Filter(id)})
		if st, ok := f.(filter.Steerer); ok && p.steer == nil {
			p.steer, p.steerStage = st, p.filters[len(p.filters)-1]
		}
	}
	for i := range cfg.Outputs {
		oc := &cfg.Outputs[i]
		plug, _ := reg.Output(oc.Type)
		o, err := plug.New(oc.Plugin, plugins.OutputEnv{
			Name: oc.Name, DataDir: cfg.DataDir, InstanceID: opts.InstanceID,
			Hostname: opts.Hostname, Version: opts.Version, Logger: opts.Logger.With("output", oc.Name),
		})
		if err != nil {
			errs = append(errs, cfg.EntryError("outputs", i, err))
			continue
		}
		if oc.RouteProgram != nil {
			use(oc.RouteProgram.Keys())
		}
		switch ku := o.(type) {
		case plugins.KeyUser:
			use(ku.Keys())
		case interface{ Keys() []string }:
			use(ku.Keys(), false)
		default:
			allKeys = true
		}
		p.outputs = append(p.outputs, &outputStage{name: oc.Name, route: oc.RouteProgram, out: o, m: opts.Metrics.Output(oc.Name), tap: opts.Tap.Point("output", oc.Name)})
	}
	keyList := make([]string, 0, len(keys))
	for k := range keys {
		keyList = append(keyList, k)
	}
	for i := range cfg.Inputs {
		ic := &cfg.Inputs[i]
		plug, _ := reg.Input(ic.Type)
		maxLine := 1 << 20
		if ml, ok := ic.Plugin.(interface{ MaxLineBytes() int }); ok {
			maxLine = ml.MaxLineBytes()
		}
		prs, newAsm, err := BuildParser(reg, ic.Parser, maxLine)
		if err != nil {
			errs = append(errs, cfg.EntryError("inputs", i, err))
			continue
		}
		if ks, ok := prs.(interface{ SelectKeys([]string, bool) }); ok {
			ks.SelectKeys(keyList, allKeys)
		}
		in, err := plug.New(ic.Plugin, input.Env{
			Name: ic.Name, DataDir: cfg.DataDir, NewAssembler: newAsm,
			ExitOnEOF: opts.ExitOnEOF, Logger: opts.Logger.With("input", ic.Name),
			ShutdownDeadline: p.abortCtx.Done(),
		})
		if err != nil {
			errs = append(errs, cfg.EntryError("inputs", i, err))
			continue
		}
		rec, _ := in.(input.Recycler)
		stage := &inputStage{recycle: rec, name: ic.Name, in: in, parser: prs, newAsm: newAsm, maxLine: maxLine, m: opts.Metrics.Input(ic.Name), tap: opts.Tap.Point("input", ic.Name)}
		if p.steer != nil && len(cfg.Parsers) > 0 {
			stage.named = map[string]parser.Parser{}
			for _, np := range cfg.Parsers {
				vp, err := build.Variant(reg, ic.Parser, np, maxLine)
				if err != nil {
					errs = append(errs, cfg.EntryError("inputs", i, fmt.Errorf("parsers %s: %w", np.Name, err)))
					continue
				}
				if ks, ok := vp.(interface{ SelectKeys([]string, bool) }); ok {
					ks.SelectKeys(keyList, allKeys)
				}
				stage.named[np.Name] = vp
			}
		}
		p.inputs = append(p.inputs, stage)
	}
	if err := errors.Join(errs...); err != nil {
		for _, o := range p.outputs {
			_ = o.out.Close(context.Background())
		}
		return nil, err
	}
	return p, nil
}

// blockWatcher is an output that sees blocks outside its Writes (a client's
// background connections to its brokers): it is given the agent's
// BlockState and its name, to Enter and Exit them there.
type blockWatcher interface {
	WatchBlocks(s *delivery.BlockState, output string)
}

// openBuffers opens each output's buffer and its delivery runner.
func (p *Pipeline) openBuffers() error {
	if p.opts.Blocks == nil {
		p.opts.Blocks = delivery.NewBlockState(p.log)
	}
	for i, o := range p.outputs {
		oc := &p.cfg.Outputs[i]
		def := "memory"
		if db, ok := o.out.(output.DefaultBufferer); ok {
			def = db.DefaultBuffer()
		}
		var err error
		if p.opts.NewBuffer != nil {
			o.buf, err = p.opts.NewBuffer(oc, def)
		} else {
			o.buf = buffer.NewMemory(int64(oc.Buffer.MaxBytes), oc.Buffer.WhenFull)
		}
		if err != nil {
			return fmt.Errorf("output %s: buffer: %w", o.name, err)
		}
		var dl delivery.DeadLetter
		if p.opts.DeadLetter != nil {
			dl = o.m.WrapDeadLetter(p.opts.DeadLetter(oc))
		}
		p.opts.Metrics.RegisterBuffer(o.name, o.buf.Stats)
		if c, ok := o.out.(output.Counter); ok {
			p.opts.Metrics.RegisterOutputCounters(o.name, c.Counts)
		}
		o.runner = &delivery.Runner{
			Name: o.name, Out: o.m.Wrap(o.out), Buf: o.buf, Batch: oc.Batch, Retry: oc.Retry,
			DeadLetter: dl, Logger: p.log, Blocks: p.opts.Blocks,
		}
		if f, ok := o.out.(interface{ InFlight() int }); ok {
			o.runner.MaxInFlight = f.InFlight()
		}
		if w, ok := o.out.(blockWatcher); ok {
			w.WatchBlocks(p.opts.Blocks, o.name)
		}
		o.dl = dl
		o.runner.SourceHeaders = dl != nil
	}
	return nil
}

// Run runs the pipeline until every input has finished (exit_on_eof) or ctx
// is cancelled. On cancel it shuts down gracefully within shutdown_timeout:
// inputs read their open files to the current end, workers finish, buffers
// are sealed and drained as far as the outputs allow; what is left stays in
// the disk buffers (or in the files, unacknowledged) for the next start.
//
// Past shutdown_timeout it aborts: every wait of the engine (emit, the
// workers' buffer writes, the inputs' waits for acknowledgements through
// Env.ShutdownDeadline, the delivery loops) ends at once, so Run returns within
// shutdown_timeout plus a small constant whatever an output does (at most
// abortGrace more for a plugin that ignores the abort).
func (p *Pipeline) Run(ctx context.Context) error {
	if err := p.openBuffers(); err != nil {
		return err
	}
	// Outputs run on their own context so that they outlive the inputs
	// during shutdown.
	outCtx, abortOutputs := context.WithCancel(context.Background())
	defer abortOutputs()
	// Emit fails only when the pipeline aborts (deadline passed).
	workCtx, abortWork := p.abortCtx, p.abortWork
	defer abortWork()

	// Filters that keep state up to date (informers) run as long as the
	// pipeline, shutdown included.
	filterCtx, stopFilters := context.WithCancel(context.Background())
	var filterWG sync.WaitGroup
	defer func() { stopFilters(); filterWG.Wait() }()
	for _, f := range p.filters {
		if r, ok := f.f.(filter.Runner); ok {
			filterWG.Add(1)
			go func() { defer filterWG.Done(); r.Run(filterCtx) }()
		}
	}

	outDone := make([]chan struct{}, len(p.outputs))
	runErrs := make([]error, len(p.outputs))
	for i, o := range p.outputs {
		outDone[i] = make(chan struct{})
		go func() {
			defer close(outDone[i])
			runErrs[i] = o.runner.Run(outCtx)
		}()
	}

	inDone := make([]chan struct{}, len(p.inputs))
	inErrs := make([]error, len(p.inputs))
	for i, in := range p.inputs {
		ch := make(chan []*event.Event, 2)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			p.work(workCtx, in, ch)
		}()
		go func() {
			defer wg.Done()
			defer close(ch)
			inErrs[i] = in.in.Run(ctx, func(batch []*event.Event) error {
				select {
				case ch <- batch:
					return nil
				case <-workCtx.Done():
					return workCtx.Err()
				}
			})
		}()
		inDone[i] = make(chan struct{})
		go func() { wg.Wait(); close(inDone[i]) }()
	}
	if p.opts.Started != nil {
		p.opts.Started()
	}

	// The shutdown deadline starts when ctx is cancelled, in either phase
	// (an exit_on_eof run that drains its outputs stops on a signal too).
	var deadline <-chan time.Time
	stop := ctx.Done()
	onStop := func() {
		stop = nil
		p.log.Info("shutting down", "timeout", p.cfg.ShutdownTimeout.String())
		t := time.NewTimer(p.cfg.ShutdownTimeout)
		deadline = t.C
	}
	aborted := false
	abort := func() {
		if !aborted {
			aborted = true
			p.log.Warn("shutdown_timeout passed: aborting", "timeout", p.cfg.ShutdownTimeout.String())
		}
		abortWork()
		abortOutputs()
	}

	// Phase 1: the inputs read to the end of their files and return.
	inputsDone := allClosed(inDone)
	for waiting := true; waiting; {
		select {
		case <-inputsDone:
			waiting = false
		case <-stop:
			onStop()
		case <-deadline:
			abort()
			waiting = false
		}
	}
	// Phase 2: the buffers drain.
	for _, o := range p.outputs {
		o.buf.Seal()
	}
	outputsDone := allClosed(outDone)
	for waiting := !aborted; waiting; {
		select {
		case <-outputsDone:
			waiting = false
		case <-stop:
			onStop()
		case <-deadline:
			abort()
			waiting = false
		}
	}
	if aborted {
		// Everything returns at once now; the grace bounds only a plugin
		// that ignores cancellation.
		grace := time.NewTimer(abortGrace)
		select {
		case <-allClosed(append(append([]chan struct{}(nil), inDone...), outDone...)):
		case <-grace.C:
		}
		grace.Stop()
	}
	var errs []error
	for i, o := range p.outputs {
		if !isClosed(outDone[i]) {
			// Its Write ignores ctx (a write to a blocked pipe): it may
			// still use the output, so it is neither closed nor waited for.
			p.log.Error("output did not stop after the shutdown was aborted: left behind", "output", o.name)
			errs = append(errs, fmt.Errorf("output %s: did not stop within shutdown_timeout", o.name))
			if err := o.buf.Close(); err != nil {
				errs = append(errs, fmt.Errorf("output %s: buffer close: %w", o.name, err))
			}
			continue
		}
		st := o.buf.Stats()
		if st.Records > 0 {
			p.log.Warn("undelivered records left in the buffer", "output", o.name, "records", st.Records, "bytes", st.Bytes)
		}
		if runErrs[i] != nil && !errors.Is(runErrs[i], context.Canceled) {
			errs = append(errs, fmt.Errorf("output %s: %w", o.name, runErrs[i]))
		}
		if err := o.out.Close(context.Background()); err != nil {
			errs = append(errs, fmt.Errorf("output %s: close: %w", o.name, err))
		}
		if err := o.buf.Close(); err != nil {
			errs = append(errs, fmt.Errorf("output %s: buffer close: %w", o.name, err))
		}
	}
	for i, in := range p.inputs {
		if !isClosed(inDone[i]) {
			p.log.Error("input did not stop after the shutdown was aborted: left behind", "input", in.name)
			errs = append(errs, fmt.Errorf("input %s: did not stop within shutdown_timeout", in.name))
			continue
		}
		if err := inErrs[i]; err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("input %s: %w", in.name, err))
		}
	}
	return errors.Join(errs...)
}

// allClosed returns a channel closed once every channel of cs is closed.
func allClosed(cs []chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		for _, c := range cs {
			<-c
		}
		close(done)
	}()
	return done
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// work parses, filters, routes and encodes the batches of one input.
// Counters are summed per batch and added once, off the per-record path.
func (p *Pipeline) work(ctx context.Context, in *inputStage, ch <-chan []*event.Event) {
	routed := make([][]*event.Event, len(p.outputs))
	arenaSize := make([]int, len(p.outputs))
	// encoded[i]: output i's records of the batch, an array reused from
	// batch to batch (the buffer copies the records it takes).
	encoded := make([][]buffer.Record, len(p.outputs))
	for batch := range ch {
		if ctx.Err() != nil {
			continue // aborting: drain without delivering (nothing is acknowledged)
		}
		for i := range routed {
			routed[i] = routed[i][:0]
		}
		var bytes, parseErrs, truncated, unrouted, routeErrs, excluded int
		tapIn := in.tap.Active()
		st := steering{p: p, in: in}
		for _, e := range batch {
			bytes += len(e.Raw)
			prs := in.parser
			if p.steer != nil {
				var exclude bool
				if exclude, prs = st.steer(e.Path); exclude {
					excluded++
					e.Done()
					continue
				}
			}
			prs.Parse(e)
			if tapIn {
				in.tap.Publish(e)
			}
			if e.Flags&(event.ParseFailed|event.Truncated) != 0 {
				if e.Has(event.ParseFailed) {
					parseErrs++
				}
				if e.Has(event.Truncated) {
					truncated++
				}
			}
			if !p.filter(e) {
				continue
			}
			n := 0
			for i, o := range p.outputs {
				if o.route != nil {
					ok, err := o.route.Bool(e)
					if err != nil {
						routeErrs++
					}
					if !ok {
						continue
					}
				}
				routed[i] = append(routed[i], e)
				n++
			}
			switch n {
			case 0:
				unrouted++
				e.Done()
			case 1:
			default:
				e.Retain(n - 1)
			}
		}
		in.m.Records.Add(len(batch))
		in.m.Bytes.Add(bytes)
		if excluded > 0 {
			// Counted as the steering filter's drops.
			p.steerStage.m.Records.Add(excluded)
			p.steerStage.m.Dropped.Add(excluded)
		}
		if parseErrs+truncated+unrouted+routeErrs > 0 {
			in.m.ParseErrors.Add(parseErrs)
			in.m.Truncated.Add(truncated)
			in.m.Unrouted.Add(unrouted)
			in.m.RouteErrors.Add(routeErrs)
			in.unrouted.Add(int64(unrouted))
		}
		for i, o := range p.outputs {
			if len(routed[i]) == 0 {
				continue
			}
			if ctx.Err() != nil {
				break // aborting: nothing more is taken (nor acknowledged)
			}
			o.tap.PublishBatch(routed[i])
			recs, arena := p.encode(ctx, o, routed[i], arenaSize[i], encoded[i][:0])
			encoded[i] = recs
			// The next arena is sized from this batch's bytes per record
			// (a large batch must not make every small one allocate big).
			arenaSize[i] = arena / max(len(routed[i]), 1)
			o.m.RecordsIn.Add(len(recs))
			o.m.BytesIn.Add(arena)
			if err := o.buf.Write(ctx, recs); err != nil {
				// Aborting or sealed: the records were not taken, so
				// their acks stay held and checkpoints do not pass them.
				p.log.Debug("buffer write interrupted", "output", o.name, "error", err)
			}
		}
		if in.recycle != nil {
			in.recycle.Recycle(batch)
		} else {
			clear(batch)
		}
	}
}

// encode turns events into buffer records, appended to recs. The records'
// bytes share one arena per call (buffer.Arena: the output's pool hands
// out one the buffer released, when it has one); sizeHint is the bytes per
// record of the previous batch (0: unknown). A record the output cannot
// encode goes to the dead-letter file; it is acknowledged only once it is
// there (ctx: the pipeline's abort).
func (p *Pipeline) encode(ctx context.Context, o *outputStage, evs []*event.Event, sizeHint int, recs []buffer.Record) ([]buffer.Record, int) {
	recs = slices.Grow(recs, len(evs))
	// sizeHint is the bytes per record of this output's last batch.
	perRecord := sizeHint
	if perRecord == 0 {
		perRecord = 320
	}
	a := o.arenas.Get(max(perRecord*len(evs)*17/16, 512)) // a little slack: records vary
	arena := a.Bytes()
	// A batch's records share their input and path: their source headers
	// are written from one cached prefix.
	var src delivery.SourceWriter
	for _, e := range evs {
		start := len(arena)
		if o.dl != nil {
			arena = src.Append(arena, e)
		}
		var err error
		arena, err = o.out.Encode(arena, e)
		if err != nil {
			// A record the output cannot encode is not lost silently: it
			// goes to the dead-letter file with the reason.
			o.m.EncodeErrors.Inc()
			arena = arena[:start]
			if o.dl != nil {
				rec := event.AppendJSON(delivery.AppendSource(nil, e), e)
				if !p.deadLetter(ctx, o, rec, "encode: "+err.Error()) {
					// Aborting: the record stays unacknowledged, so the
					// input reads it again at the next start.
					continue
				}
			} else {
				p.log.Warn("cannot encode record", "output", o.name, "error", err.Error())
			}
			e.Done()
			continue
		}
		recs = append(recs, buffer.Record{Data: arena[start:len(arena):len(arena)], Ack: e.Releaser(), Arena: a})
	}
	a.Hold(arena, len(recs))
	return recs, len(arena)
}

// deadLetterRetry is the first wait before a failed dead-letter write is
// tried again (doubling up to 10 s).
var deadLetterRetry = 100 * time.Millisecond

// deadLetter writes one record that the output cannot encode to its
// dead-letter file, retrying while that fails (a full or read-only disk,
// dead_letter.when_full: block): the worker waits, like on a full buffer,
// and the record is never acknowledged before it is there. It reports false
// when the pipeline aborts first.
func (p *Pipeline) deadLetter(ctx context.Context, o *outputStage, rec []byte, reason string) bool {
	wait := deadLetterRetry
	for {
		err := o.dl.Write(o.name, [][]byte{rec}, []string{reason})
		if err == nil {
			return true
		}
		p.log.Error("cannot write a dead letter for a record the output cannot encode: the input waits, retrying",
			"output", o.name, "error", err.Error(), "retry_in", wait.String())
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// filter runs the filter chain; false means the event was dropped (and
// released).
func (p *Pipeline) filter(e *event.Event) bool {
	for _, f := range p.filters {
		if f.when != nil {
			ok, err := f.when.Bool(e)
			if err != nil {
				f.m.Errors.Inc()
				continue
			}
			if !ok {
				continue
			}
		}
		f.m.Records.Inc()
		if !f.f.Apply(e) {
			f.m.Dropped.Inc()
			e.Done()
			return false
		}
	}
	return true
}

// Unrouted returns the number of records of an input that matched no route.
func (p *Pipeline) Unrouted(inputName string) int64 {
	for _, in := range p.inputs {
		if in.name == inputName {
			return in.unrouted.Load()
		}
	}
	return 0
}

// Inputs returns the built inputs by name (for the agent to register their
// statistics).
func (p *Pipeline) Inputs() map[string]input.Input {
	m := make(map[string]input.Input, len(p.inputs))
	for _, in := range p.inputs {
		m[in.name] = in.in
	}
	return m
}

// Outputs returns the built outputs by name (for the agent's /status).
func (p *Pipeline) Outputs() map[string]output.Output {
	m := make(map[string]output.Output, len(p.outputs))
	for _, o := range p.outputs {
		m[o.name] = o.out
	}
	return m
}

// Names lists the pipeline's inputs, filters and outputs (for metrics.Prune).
func (p *Pipeline) Names() metrics.Names {
	var n metrics.Names
	for _, in := range p.inputs {
		n.Inputs = append(n.Inputs, in.name)
	}
	for _, f := range p.filters {
		n.Filters = append(n.Filters, f.id)
	}
	for _, o := range p.outputs {
		n.Outputs = append(n.Outputs, o.name)
	}
	return n
}

// BufferDir is where an output's disk buffer lives.
func BufferDir(dataDir, output string) string {
	return filepath.Join(dataDir, "buffer", output)
}

// Close releases what Build created, for a pipeline that is never run.
func (p *Pipeline) Close() {
	for _, o := range p.outputs {
		_ = o.out.Close(context.Background())
	}
}
