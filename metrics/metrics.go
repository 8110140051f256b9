// Package metrics exports sidelog's counters and gauges in the Prometheus
// format.
//
// Two kinds of series live here:
//
//   - Counters that the pipeline increments on its hot path. The engine
//     resolves them once per input, filter and output (Input, Filter,
//     Output) and keeps the returned structs: incrementing one is a single
//     atomic add, with no label lookup and no allocation.
//   - Gauges and counters read at scrape time from functions the engine
//     registers (RegisterBuffer, RegisterTail, RegisterFilterCounters): the
//     buffers, tailers and filters keep their own state and are asked for a
//     snapshot only when Prometheus scrapes.
//
// Every series is collected by one collector registered on the
// *prometheus.Registry given to New (never the global registry), so that a
// config reload can drop the series of a removed input or output (Prune)
// and tests can build as many as they like.
//
// A nil *Metrics is valid: its methods return working, unexported counters,
// so code that runs without metrics (validate, tests) needs no branches.
package metrics

import (
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sidelog/sidelog/buffer"
	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/filter"
	"github.com/sidelog/sidelog/output"
)

// Counter is a monotonically increasing count, safe for concurrent use.
// Its methods are nil-safe.
type Counter struct{ v atomic.Uint64 }

// Add adds n (negative values are ignored: counters only grow).
func (c *Counter) Add(n int) {
	if c != nil && n > 0 {
		c.v.Add(uint64(n))
	}
}

// Inc adds one.
func (c *Counter) Inc() {
	if c != nil {
		c.v.Add(1)
	}
}

// Value returns the count.
func (c *Counter) Value() uint64 {
	if c == nil {
		return 0
	}
	return c.v.Load()
}

// Dropped-record reasons, the `reason` label of sidelog_dropped_records_total.
const (
	ReasonFiltered     = "filtered"      // a filter (drop, keep, sample, throttle) dropped it
	ReasonUnrouted     = "unrouted"      // no output's route matched
	ReasonEncodeError  = "encode_error"  // the output could not encode it
	ReasonBufferFull   = "buffer_full"   // buffer.when_full: drop_newest
	ReasonCorrupt      = "corrupt"       // lost in a damaged disk-buffer frame
	ReasonDeadLettered = "dead_lettered" // failed permanently, written to the dead-letter file
	ReasonDeadLetterEv = "dead_letter_evicted"
)

// InputMetrics are one input's hot-path counters.
type InputMetrics struct {
	Records     Counter // records read (before parsing)
	Bytes       Counter // bytes of the raw lines read
	ParseErrors Counter // records the parser could not parse
	Truncated   Counter // lines cut at max_line_bytes
	Unrouted    Counter // records that matched no output's route (also counted as dropped)
	RouteErrors Counter // run-time errors evaluating a route on this input's records
}

// FilterMetrics are one filter's hot-path counters.
type FilterMetrics struct {
	Records Counter // records the filter was applied to (its `when` was true or absent)
	Dropped Counter // records the filter dropped (also counted as dropped)
	Errors  Counter // run-time errors of its `when` (the record went on unchanged)
}

// OutputMetrics are one output's counters. RecordsIn, BytesIn and
// EncodeErrors are the engine's (records routed, encoded and handed to the
// buffer); the delivery counters are kept by the wrappers that Wrap and
// WrapDeadLetter return.
type OutputMetrics struct {
	RecordsIn    Counter // records encoded and written to the buffer
	BytesIn      Counter // bytes of those encoded records
	EncodeErrors Counter // records the output could not encode (dropped)

	RecordsOut    Counter // records delivered
	BytesOut      Counter // bytes of the delivered records (buffered form)
	Retries       Counter // records handed back for a retry after a failed write
	DeadLettered  Counter // records that failed permanently (dead-letter file)
	DeadLetterEv  Counter // dead-lettered records lost when old dead-letter files were removed
	Requests      Counter // Write calls
	RetryableErrs Counter // Write calls that failed (or partly failed) with a retryable error
	ThrottledErrs Counter // ... with a throttled error (429, Retry-After)
	PermanentErrs Counter // ... with a permanent error

	duration prometheus.Observer
	state    stateBox
}

// TailStats is a snapshot of a file input, for RegisterTail.
type TailStats struct {
	OpenFiles   int
	Rotations   int64 // rotations seen (renamed or removed files followed to their end)
	Truncations int64 // files truncated in place (copytruncate)
	// LostBytes are the bytes given up, by reason (truncated, deleted,
	// read_error, line_cut, group_cut): every reason the input knows, 0
	// included.
	LostBytes  map[string]int64
	OpenErrors int64 // failed opens of matched files (retried)
	Files      []FileStats
}

// FileStats is one open file: how far it is read.
type FileStats struct {
	Path   string
	Size   int64 // the file's size at the last look
	Offset int64 // bytes read
}

// Lag is the number of bytes written to the file and not read yet.
func (f FileStats) Lag() int64 { return max(f.Size-f.Offset, 0) }

// Metrics holds every series of one agent.
type Metrics struct {
	version string
	start   time.Time

	mu      sync.RWMutex
	inputs  map[string]*InputMetrics
	filters map[string]*FilterMetrics
	outputs map[string]*OutputMetrics
	bufs    map[string]func() buffer.Stats
	tails   map[string]func() TailStats
	kafka   map[string]func() []PartitionLag
	// perFileLag: export sidelog_input_file_lag_bytes (one series per open
	// file: opt-in, as a DaemonSet holds hundreds of files per node).
	perFileLag atomic.Bool
	fcounts    map[string]func() []filter.Count
	ocounts    map[string]func() []output.Count
	blocks     *delivery.BlockState

	duration *prometheus.HistogramVec

	// Reloads counts config reloads by result; the engine increments them.
	ReloadOK, ReloadFailed Counter
	lastReload             atomic.Int64 // unix seconds of the last successful (re)load
}

// New creates the metrics of one agent and registers them on reg, with the
// Go runtime and process collectors. version is exported as
// sidelog_build_info{version, goversion}.
func New(reg *prometheus.Registry, version string) (*Metrics, error) {
	m := &Metrics{
		version: version,
		start:   time.Now(),
		inputs:  map[string]*InputMetrics{},
		filters: map[string]*FilterMetrics{},
		outputs: map[string]*OutputMetrics{},
		bufs:    map[string]func() buffer.Stats{},
		tails:   map[string]func() TailStats{},
		kafka:   map[string]func() []PartitionLag{},
		fcounts: map[string]func() []filter.Count{},
		ocounts: map[string]func() []output.Count{},
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sidelog_output_write_duration_seconds",
			Help:    "Duration of an output's Write calls (one batch each).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"output"}),
	}
	m.lastReload.Store(m.start.Unix())
	for _, c := range []prometheus.Collector{
		collector{m},
		m.duration,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Input returns the counters of input name, creating them once. A reload
// that keeps the name keeps counting on the same series.
func (m *Metrics) Input(name string) *InputMetrics {
	if m == nil {
		return new(InputMetrics)
	}
	return getOrAdd(m, m.inputs, name, func() *InputMetrics { return new(InputMetrics) })
}

// Filter returns the counters of the filter with the given id (the engine's
// "filters[2].modify").
func (m *Metrics) Filter(id string) *FilterMetrics {
	if m == nil {
		return new(FilterMetrics)
	}
	return getOrAdd(m, m.filters, id, func() *FilterMetrics { return new(FilterMetrics) })
}

// Output returns the counters of output name.
func (m *Metrics) Output(name string) *OutputMetrics {
	if m == nil {
		return &OutputMetrics{duration: noObserver{}}
	}
	return getOrAdd(m, m.outputs, name, func() *OutputMetrics {
		return &OutputMetrics{duration: m.duration.WithLabelValues(name), state: newStateBox()}
	})
}

func getOrAdd[T any](m *Metrics, set map[string]*T, name string, mk func() *T) *T {
	m.mu.RLock()
	v, ok := set[name]
	m.mu.RUnlock()
	if ok {
		return v
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := set[name]; ok {
		return v
	}
	v = mk()
	set[name] = v
	return v
}

// RegisterBuffer makes output's buffer visible: stats is called at each
// scrape (it must be cheap and safe for concurrent use; buffer.Buffer.Stats
// is). A second call for the same output replaces the first (reload).
// SetBlocks gives the agent's output-blocked state to the metrics
// (sidelog_output_blocked, /status's blocked entries).
func (m *Metrics) SetBlocks(b *delivery.BlockState) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.blocks = b
	m.mu.Unlock()
}

func (m *Metrics) blocksOf(output string) []delivery.Block {
	m.mu.RLock()
	b := m.blocks
	m.mu.RUnlock()
	return b.Blocks(output)
}

func (m *Metrics) RegisterBuffer(output string, stats func() buffer.Stats) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.bufs[output] = stats
	m.mu.Unlock()
}

// SetPerFileLag turns the per-file lag series on or off (metrics.per_file_lag).
func (m *Metrics) SetPerFileLag(on bool) {
	if m != nil {
		m.perFileLag.Store(on)
	}
}

// RegisterTail makes a file input's open files, rotations and lag visible.
func (m *Metrics) RegisterTail(input string, stats func() TailStats) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.tails[input] = stats
	m.mu.Unlock()
}

// PartitionLag is one Kafka partition an input consumes: the records past
// its committed offset.
type PartitionLag struct {
	Topic     string
	Partition int32
	Lag       int64
}

// RegisterKafka makes a kafka input's per-partition lag visible
// (sidelog_input_kafka_lag_records{input,topic,partition}).
func (m *Metrics) RegisterKafka(input string, lag func() []PartitionLag) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.kafka[input] = lag
	m.mu.Unlock()
}

// RegisterFilterCounters exports a filter's own counters (filter.Counter)
// as sidelog_filter_events_total{filter, kind}.
func (m *Metrics) RegisterFilterCounters(id string, counts func() []filter.Count) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.fcounts[id] = counts
	m.mu.Unlock()
}

// RegisterOutputCounters exports an output's own counters (output.Counter)
// as sidelog_output_events_total{output, kind}, those marked Dropped also in
// sidelog_dropped_records_total, and in /status. A second call for the same
// output replaces the first (reload).
func (m *Metrics) RegisterOutputCounters(name string, counts func() []output.Count) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.ocounts[name] = counts
	m.mu.Unlock()
}

// Names lists the inputs, filters and outputs of a config.
type Names struct {
	Inputs, Filters, Outputs []string
}

// Prune forgets the series and registered functions of every input, filter
// and output not in keep: called after a reload has applied a new config,
// so that removed components stop being reported (and their old pipeline's
// functions are no longer called).
func (m *Metrics) Prune(keep Names) {
	if m == nil {
		return
	}
	set := func(names []string) map[string]bool {
		s := make(map[string]bool, len(names))
		for _, n := range names {
			s[n] = true
		}
		return s
	}
	in, fl, out := set(keep.Inputs), set(keep.Filters), set(keep.Outputs)
	m.mu.Lock()
	defer m.mu.Unlock()
	prune(m.inputs, in)
	prune(m.tails, in)
	prune(m.kafka, in)
	prune(m.filters, fl)
	prune(m.fcounts, fl)
	for name := range m.outputs {
		if !out[name] {
			m.duration.DeleteLabelValues(name)
		}
	}
	prune(m.outputs, out)
	prune(m.bufs, out)
	prune(m.ocounts, out)
}

func prune[T any](m map[string]T, keep map[string]bool) {
	for k := range m {
		if !keep[k] {
			delete(m, k)
		}
	}
}

// Reloaded records the result of a config reload.
func (m *Metrics) Reloaded(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.ReloadOK.Inc()
		m.lastReload.Store(time.Now().Unix())
	} else {
		m.ReloadFailed.Inc()
	}
}

type noObserver struct{}

func (noObserver) Observe(float64) {}

// sortedKeys returns the keys of a map in order, for deterministic output.
func sortedKeys[T any](m map[string]T) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var goVersion = runtime.Version()
