package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidelog/sidelog/buffer"
	"github.com/sidelog/sidelog/filter"
	"github.com/sidelog/sidelog/output"
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// The series, by family. Their names and labels are documented in
// docs/operations.md; metrics_test.go checks that every one is there.
var (
	dBuildInfo  = desc("sidelog_build_info", "Always 1; labelled with the agent's version.", "version", "goversion")
	dStart      = desc("sidelog_start_time_seconds", "Unix time the agent started.")
	dReloads    = desc("sidelog_config_reloads_total", "Config reloads (SIGHUP) by result.", "result")
	dLastReload = desc("sidelog_config_last_reload_success_timestamp_seconds", "Unix time the running config was loaded.")

	dDropped = desc("sidelog_dropped_records_total", "Records that will never be delivered, by where and why.", "component", "name", "reason")

	dInRecords   = desc("sidelog_input_records_total", "Records read by an input.", "input")
	dInBytes     = desc("sidelog_input_bytes_total", "Bytes of the lines read by an input.", "input")
	dInParseErr  = desc("sidelog_input_parse_errors_total", "Records an input's parser could not parse (sent on as {message, parse_error}).", "input")
	dInTruncated = desc("sidelog_input_truncated_total", "Lines cut at max_line_bytes.", "input")
	dInUnrouted  = desc("sidelog_input_unrouted_total", "Records that matched no output's route.", "input")
	dInRouteErr  = desc("sidelog_input_route_errors_total", "Run-time errors evaluating routes on an input's records.", "input")
	dInOpen      = desc("sidelog_input_open_files", "Files an input holds open.", "input")
	dInRotations = desc("sidelog_input_rotations_total", "Rotated or removed files followed to their end.", "input")
	dInTruncates = desc("sidelog_input_file_truncations_total", "Files truncated in place (copytruncate).", "input")
	dInLost      = desc("sidelog_input_lost_bytes_total", "Bytes an input gave up, by reason (truncated, deleted, read_error, line_cut, group_cut).", "input", "reason")
	dInOpenErr   = desc("sidelog_input_open_errors_total", "Failed opens of matched files (permissions, file descriptor limits); retried at the next scan.", "input")
	dInLag       = desc("sidelog_input_lag_bytes", "Bytes written to an input's open files and not read yet.", "input")
	dKafkaLag    = desc("sidelog_input_kafka_lag_records", "Records in a Kafka partition past the offset the input committed (as of its last fetch).", "input", "topic", "partition")
	dFileLag     = desc("sidelog_input_file_lag_bytes", "Bytes written to one open file and not read yet.", "input", "path")

	dFRecords = desc("sidelog_filter_records_total", "Records a filter was applied to (its when was true or absent).", "filter")
	dFDropped = desc("sidelog_filter_dropped_total", "Records a filter dropped.", "filter")
	dFErrors  = desc("sidelog_filter_errors_total", "Run-time errors of a filter's when (the record went on unchanged).", "filter")
	dFEvents  = desc("sidelog_filter_events_total", "A filter's own counters (throttled, sampled_out, errors...).", "filter", "kind")

	dOutRecordsIn  = desc("sidelog_output_records_in_total", "Records routed to an output, encoded and written to its buffer.", "output")
	dOutBytesIn    = desc("sidelog_output_bytes_in_total", "Bytes of the encoded records written to an output's buffer.", "output")
	dOutEncodeErr  = desc("sidelog_output_encode_errors_total", "Records an output could not encode (dropped).", "output")
	dOutRecordsOut = desc("sidelog_output_records_out_total", "Records delivered by an output.", "output")
	dOutBytesOut   = desc("sidelog_output_bytes_out_total", "Bytes (buffered form) of the records delivered by an output.", "output")
	dOutRetries    = desc("sidelog_output_retries_total", "Records handed back for a retry after a failed write.", "output")
	dOutDead       = desc("sidelog_output_dead_lettered_total", "Records that failed permanently and went to the dead-letter file.", "output")
	dOutRequests   = desc("sidelog_output_requests_total", "Write calls (one batch each).", "output")
	dOutErrors     = desc("sidelog_output_errors_total", "Write calls that failed in whole or in part, by error class.", "output", "class")
	dOutState      = desc("sidelog_output_state", "1 for the output's current state (starting, ok, partial, throttled, failing, blocked).", "output", "state")
	dOutBlocked    = desc("sidelog_output_blocked", "Keys (indices, topics; one for the whole output) an output is blocked on now, by reason: records kept and retried until the cause is fixed (0 once it ended).", "output", "reason")
	dOutEvents     = desc("sidelog_output_events_total", "An output's own counters (possible_duplicates, too_old_redated, too_old_dropped, ...).", "output", "kind")
	dOutLastOK     = desc("sidelog_output_last_success_timestamp_seconds", "Unix time of the output's last successful write (0: none yet).", "output")

	dBufRecords   = desc("sidelog_buffer_records", "Records in an output's buffer, not yet delivered.", "output")
	dBufBytes     = desc("sidelog_buffer_bytes", "Bytes in an output's buffer, not yet delivered.", "output")
	dBufOldestAge = desc("sidelog_buffer_oldest_unacked_age_seconds", "Age of the oldest undelivered record in an output's buffer (0: empty).", "output")
	dBufSegments  = desc("sidelog_buffer_segments", "Segment files of an output's disk buffer.", "output")
	dBufInFlight  = desc("sidelog_buffer_in_flight_batches", "Batches handed to the delivery loop and not acknowledged.", "output")
	dBufStalled   = desc("sidelog_buffer_stalled", "1 while an output's disk buffer cannot write (disk full, I/O error).", "output")
	dBufNoSpace   = desc("sidelog_buffer_no_space_errors_total", "Disk-buffer writes that failed with no space left (retried).", "output")
	dBufIOErrors  = desc("sidelog_buffer_io_errors_total", "Disk-buffer writes or fsyncs that failed (retried).", "output")
	dBufCorruptB  = desc("sidelog_buffer_corrupt_bytes_total", "Bytes of damaged disk-buffer frames skipped at recovery.", "output")
)

// allDescs lists every family the collector emits.
var allDescs = []*prometheus.Desc{
	dBuildInfo, dStart, dReloads, dLastReload, dDropped,
	dInRecords, dInBytes, dInParseErr, dInTruncated, dInUnrouted, dInRouteErr, dInOpen, dInRotations, dInTruncates, dInLost, dInOpenErr, dInLag, dFileLag, dKafkaLag,
	dFRecords, dFDropped, dFErrors, dFEvents,
	dOutRecordsIn, dOutBytesIn, dOutEncodeErr, dOutRecordsOut, dOutBytesOut, dOutRetries, dOutDead, dOutRequests, dOutErrors, dOutState, dOutLastOK, dOutBlocked, dOutEvents,
	dBufRecords, dBufBytes, dBufOldestAge, dBufSegments, dBufInFlight, dBufStalled, dBufNoSpace, dBufIOErrors, dBufCorruptB,
}

type collector struct{ m *Metrics }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func u(v int64) uint64 { return uint64(max(v, 0)) }

// Collect snapshots every series. The registered functions are called
// without the lock held, so that a slow one does not block the hot path's
// getOrAdd.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	now := time.Now()
	gauge(ch, dBuildInfo, 1, m.version, goVersion)
	gauge(ch, dStart, float64(m.start.UnixNano())/1e9)
	counter(ch, dReloads, m.ReloadOK.Value(), "success")
	counter(ch, dReloads, m.ReloadFailed.Value(), "failure")
	gauge(ch, dLastReload, float64(m.lastReload.Load()))

	m.mu.RLock()
	inputs := make(map[string]*InputMetrics, len(m.inputs))
	for k, v := range m.inputs {
		inputs[k] = v
	}
	filters := make(map[string]*FilterMetrics, len(m.filters))
	for k, v := range m.filters {
		filters[k] = v
	}
	outputs := make(map[string]*OutputMetrics, len(m.outputs))
	for k, v := range m.outputs {
		outputs[k] = v
	}
	bufs := make(map[string]func() buffer.Stats, len(m.bufs))
	for k, v := range m.bufs {
		bufs[k] = v
	}
	tails := make(map[string]func() TailStats, len(m.tails))
	for k, v := range m.tails {
		tails[k] = v
	}
	kafka := make(map[string]func() []PartitionLag, len(m.kafka))
	for k, v := range m.kafka {
		kafka[k] = v
	}
	fcounts := make(map[string]func() []filter.Count, len(m.fcounts))
	for k, v := range m.fcounts {
		fcounts[k] = v
	}
	ocounts := make(map[string]func() []output.Count, len(m.ocounts))
	for k, v := range m.ocounts {
		ocounts[k] = v
	}
	m.mu.RUnlock()

	for _, name := range sortedKeys(inputs) {
		im := inputs[name]
		counter(ch, dInRecords, im.Records.Value(), name)
		counter(ch, dInBytes, im.Bytes.Value(), name)
		counter(ch, dInParseErr, im.ParseErrors.Value(), name)
		counter(ch, dInTruncated, im.Truncated.Value(), name)
		counter(ch, dInUnrouted, im.Unrouted.Value(), name)
		counter(ch, dInRouteErr, im.RouteErrors.Value(), name)
		counter(ch, dDropped, im.Unrouted.Value(), "input", name, ReasonUnrouted)
	}
	for _, name := range sortedKeys(tails) {
		st := tails[name]()
		gauge(ch, dInOpen, float64(st.OpenFiles), name)
		counter(ch, dInRotations, u(st.Rotations), name)
		counter(ch, dInTruncates, u(st.Truncations), name)
		for _, r := range sortedKeys(st.LostBytes) {
			counter(ch, dInLost, u(st.LostBytes[r]), name, r)
		}
		counter(ch, dInOpenErr, u(st.OpenErrors), name)
		var lag int64
		seen := make(map[string]bool, len(st.Files))
		for _, f := range st.Files {
			lag += f.Lag()
			if seen[f.Path] {
				continue // two generations of one path (rotation): report the first
			}
			seen[f.Path] = true
			if c.m.perFileLag.Load() {
				gauge(ch, dFileLag, float64(f.Lag()), name, f.Path)
			}
		}
		gauge(ch, dInLag, float64(lag), name)
	}
	for _, name := range sortedKeys(kafka) {
		for _, p := range kafka[name]() {
			gauge(ch, dKafkaLag, float64(p.Lag), name, p.Topic, strconv.Itoa(int(p.Partition)))
		}
	}
	for _, id := range sortedKeys(filters) {
		fm := filters[id]
		counter(ch, dFRecords, fm.Records.Value(), id)
		counter(ch, dFDropped, fm.Dropped.Value(), id)
		counter(ch, dFErrors, fm.Errors.Value(), id)
		counter(ch, dDropped, fm.Dropped.Value(), "filter", id, ReasonFiltered)
	}
	for _, id := range sortedKeys(fcounts) {
		seen := map[string]bool{}
		for _, c := range fcounts[id]() {
			if seen[c.Name] {
				continue
			}
			seen[c.Name] = true
			counter(ch, dFEvents, u(c.Value), id, c.Name)
		}
	}
	for _, name := range sortedKeys(outputs) {
		om := outputs[name]
		counter(ch, dOutRecordsIn, om.RecordsIn.Value(), name)
		counter(ch, dOutBytesIn, om.BytesIn.Value(), name)
		counter(ch, dOutEncodeErr, om.EncodeErrors.Value(), name)
		counter(ch, dOutRecordsOut, om.RecordsOut.Value(), name)
		counter(ch, dOutBytesOut, om.BytesOut.Value(), name)
		counter(ch, dOutRetries, om.Retries.Value(), name)
		counter(ch, dOutDead, om.DeadLettered.Value(), name)
		counter(ch, dOutRequests, om.Requests.Value(), name)
		counter(ch, dOutErrors, om.RetryableErrs.Value(), name, "retryable")
		counter(ch, dOutErrors, om.ThrottledErrs.Value(), name, "throttled")
		counter(ch, dOutErrors, om.PermanentErrs.Value(), name, "permanent")
		counter(ch, dDropped, om.EncodeErrors.Value(), "output", name, ReasonEncodeError)
		counter(ch, dDropped, om.DeadLettered.Value(), "output", name, ReasonDeadLettered)
		counter(ch, dDropped, om.DeadLetterEv.Value(), "output", name, ReasonDeadLetterEv)
		st := om.State()
		if len(c.m.blocksOf(name)) > 0 {
			st.State = StateBlocked
		}
		for _, s := range States {
			v := 0.0
			if s == st.State {
				v = 1
			}
			gauge(ch, dOutState, v, name, s)
		}
		var last float64
		if !st.LastSuccess.IsZero() {
			last = float64(st.LastSuccess.UnixNano()) / 1e9
		}
		gauge(ch, dOutLastOK, last, name)
	}
	for _, name := range sortedKeys(ocounts) {
		seen := map[string]bool{}
		for _, c := range ocounts[name]() {
			if seen[c.Name] {
				continue
			}
			seen[c.Name] = true
			counter(ch, dOutEvents, u(c.Value), name, c.Name)
			if c.Dropped {
				counter(ch, dDropped, u(c.Value), "output", name, c.Name)
			}
		}
	}
	m.mu.RLock()
	blocks := m.blocks
	m.mu.RUnlock()
	g := blocks.Gauge()
	for _, name := range sortedKeys(g) {
		rs := g[name]
		for _, r := range sortedKeys(rs) {
			gauge(ch, dOutBlocked, float64(rs[r]), name, r)
		}
	}
	for _, name := range sortedKeys(bufs) {
		st := bufs[name]()
		gauge(ch, dBufRecords, float64(st.Records), name)
		gauge(ch, dBufBytes, float64(st.Bytes), name)
		var age float64
		if !st.OldestUnacked.IsZero() {
			age = max(now.Sub(st.OldestUnacked).Seconds(), 0)
		}
		gauge(ch, dBufOldestAge, age, name)
		gauge(ch, dBufSegments, float64(st.Segments), name)
		gauge(ch, dBufInFlight, float64(st.InFlight), name)
		stalled := 0.0
		if st.Stalled {
			stalled = 1
		}
		gauge(ch, dBufStalled, stalled, name)
		counter(ch, dBufNoSpace, u(st.NoSpace), name)
		counter(ch, dBufIOErrors, u(st.IOErrors), name)
		counter(ch, dBufCorruptB, u(st.CorruptBytes), name)
		counter(ch, dDropped, u(st.Dropped), "output", name, ReasonBufferFull)
		counter(ch, dDropped, u(st.Corrupt), "output", name, ReasonCorrupt)
	}
}
