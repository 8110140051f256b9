package metrics

import (
	"time"

	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/output"
)

// Snapshot is the agent's state as /status shows it (JSON). It holds
// names, counts and the outputs' error messages: never a config value.
type Snapshot struct {
	Version   string                    `json:"version"`
	StartTime time.Time                 `json:"start_time"`
	Inputs    map[string]InputSnapshot  `json:"inputs"`
	Outputs   map[string]OutputSnapshot `json:"outputs"`
}

// InputSnapshot is one input in /status.
type InputSnapshot struct {
	Records     uint64 `json:"records"`
	ParseErrors uint64 `json:"parse_errors"`
	Unrouted    uint64 `json:"unrouted"`
	OpenFiles   int    `json:"open_files"`
	LagBytes    int64  `json:"lag_bytes"`
}

// OutputSnapshot is one output in /status.
type OutputSnapshot struct {
	State                string     `json:"state"`
	LastError            string     `json:"last_error,omitempty"`
	Since                time.Time  `json:"since"`
	LastSuccess          *time.Time `json:"last_success,omitempty"`
	RecordsIn            uint64     `json:"records_in"`
	RecordsOut           uint64     `json:"records_out"`
	Retries              uint64     `json:"retries"`
	DeadLettered         uint64     `json:"dead_lettered"`
	BufferedRecords      int64      `json:"buffered_records"`
	BufferedBytes        int64      `json:"buffered_bytes"`
	OldestUnackedSeconds float64    `json:"oldest_unacked_seconds"`
	BufferStalled        bool       `json:"buffer_stalled,omitempty"`
	// Blocked lists what the output is blocked on now (state "blocked"):
	// the key (index, topic; absent for the whole output), the reason, the
	// destination's message and since when.
	Blocked []delivery.Block `json:"blocked,omitempty"`
	// Counters are the output's own counters (output.Counter), e.g.
	// possible_duplicates.
	Counters map[string]int64 `json:"counters,omitempty"`
}

// Snapshot returns the state of every input and output, for /status.
func (m *Metrics) Snapshot() Snapshot {
	s := Snapshot{Inputs: map[string]InputSnapshot{}, Outputs: map[string]OutputSnapshot{}}
	if m == nil {
		return s
	}
	s.Version, s.StartTime = m.version, m.start
	now := time.Now()
	m.mu.RLock()
	inputs := make(map[string]*InputMetrics, len(m.inputs))
	for k, v := range m.inputs {
		inputs[k] = v
	}
	outputs := make(map[string]*OutputMetrics, len(m.outputs))
	for k, v := range m.outputs {
		outputs[k] = v
	}
	tails := make(map[string]func() TailStats, len(m.tails))
	for k, v := range m.tails {
		tails[k] = v
	}
	bufStats := make(map[string]func() (int64, int64, time.Time, bool), len(m.bufs))
	for k, f := range m.bufs {
		bufStats[k] = func() (int64, int64, time.Time, bool) {
			st := f()
			return st.Records, st.Bytes, st.OldestUnacked, st.Stalled
		}
	}
	blocks := m.blocks
	ocounts := make(map[string]func() []output.Count, len(m.ocounts))
	for k, v := range m.ocounts {
		ocounts[k] = v
	}
	m.mu.RUnlock()

	for name, im := range inputs {
		is := InputSnapshot{Records: im.Records.Value(), ParseErrors: im.ParseErrors.Value(), Unrouted: im.Unrouted.Value()}
		if f, ok := tails[name]; ok {
			st := f()
			is.OpenFiles = st.OpenFiles
			for _, fl := range st.Files {
				is.LagBytes += fl.Lag()
			}
		}
		s.Inputs[name] = is
	}
	for name, om := range outputs {
		st := om.State()
		os := OutputSnapshot{
			State: st.State, LastError: st.LastError, Since: st.Since,
			RecordsIn: om.RecordsIn.Value(), RecordsOut: om.RecordsOut.Value(),
			Retries: om.Retries.Value(), DeadLettered: om.DeadLettered.Value(),
		}
		if !st.LastSuccess.IsZero() {
			t := st.LastSuccess
			os.LastSuccess = &t
		}
		if b := blocks.Blocks(name); len(b) > 0 {
			os.Blocked = b
			os.State, os.Since, os.LastError = StateBlocked, b[0].Since, b[0].Message
		}
		if f, ok := bufStats[name]; ok {
			var oldest time.Time
			os.BufferedRecords, os.BufferedBytes, oldest, os.BufferStalled = f()
			if !oldest.IsZero() {
				os.OldestUnackedSeconds = max(now.Sub(oldest).Seconds(), 0)
			}
		}
		if f, ok := ocounts[name]; ok {
			for _, c := range f() {
				if os.Counters == nil {
					os.Counters = map[string]int64{}
				}
				os.Counters[c.Name] = c.Value
			}
		}
		s.Outputs[name] = os
	}
	return s
}
