package metrics

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/output"
)

// Output states, as /status and sidelog_output_state show them.
const (
	StateStarting  = "starting"  // no write yet
	StateOK        = "ok"        // the last write delivered every record
	StatePartial   = "partial"   // the last write delivered some records; others failed
	StateThrottled = "throttled" // the last write was refused with 429 / Retry-After
	StateFailing   = "failing"   // the last write failed (connection, 5xx, auth, ...)
	StateBlocked   = "blocked"   // records wait for a configuration problem to be fixed (see delivery.BlockedError)
)

// States lists every state, in the order sidelog_output_state reports them.
var States = []string{StateStarting, StateOK, StatePartial, StateThrottled, StateFailing, StateBlocked}

// OutputState is an output's health as seen from its writes.
type OutputState struct {
	State       string
	LastError   string    // the last failure's message ("" after a success)
	Since       time.Time // when State was entered
	LastSuccess time.Time // zero: no successful write yet
}

type stateBox struct {
	mu *sync.Mutex
	s  *OutputState
}

func newStateBox() stateBox {
	return stateBox{mu: new(sync.Mutex), s: &OutputState{State: StateStarting, Since: time.Now()}}
}

// State returns the output's current state.
func (om *OutputMetrics) State() OutputState {
	if om.state.mu == nil {
		return OutputState{State: StateStarting}
	}
	om.state.mu.Lock()
	defer om.state.mu.Unlock()
	return *om.state.s
}

func (om *OutputMetrics) setState(state, lastErr string, success bool) {
	if om.state.mu == nil {
		return
	}
	now := time.Now()
	om.state.mu.Lock()
	s := om.state.s
	if s.State != state {
		s.State, s.Since = state, now
	}
	s.LastError = lastErr
	if success {
		s.LastSuccess = now
	}
	om.state.mu.Unlock()
}

// Wrap returns out with its Write calls counted: records and bytes
// delivered, retries, errors by class, durations, and the output's state for
// /status. Give the wrapper to the delivery loop (delivery.Runner.Out) only:
// it hides the optional interfaces of out (KeyUser, DefaultBufferer), which
// the engine checks on out itself when it builds the pipeline.
//
// A Write that fails because its context was cancelled (shutdown) changes
// nothing.
func (om *OutputMetrics) Wrap(out output.Output) output.Output {
	return &countingOutput{Output: out, m: om}
}

type countingOutput struct {
	output.Output
	m *OutputMetrics
}

func (w *countingOutput) Write(ctx context.Context, batch [][]byte) error {
	start := time.Now()
	err := w.Output.Write(ctx, batch)
	if err != nil && ctx.Err() != nil {
		return err
	}
	w.m.duration.Observe(time.Since(start).Seconds())
	w.m.Requests.Inc()
	w.m.observe(batch, err)
	return err
}

func (om *OutputMetrics) observe(batch [][]byte, err error) {
	if err == nil {
		om.delivered(batch, nil)
		om.setState(StateOK, "", true)
		return
	}
	var be *output.BatchError
	if errors.As(err, &be) {
		om.delivered(batch, be.Failed)
		idx := make([]int, 0, len(be.Failed))
		for i := range be.Failed {
			idx = append(idx, i)
		}
		sort.Ints(idx)
		var retry int
		var classes [3]bool
		for _, i := range idx {
			c, _ := output.Classify(be.Failed[i])
			if c != output.Permanent {
				retry++
			}
			if c >= 0 && int(c) < len(classes) {
				classes[c] = true
			}
		}
		om.Retries.Add(retry)
		om.countClasses(classes)
		msg := ""
		if len(idx) > 0 && be.Failed[idx[0]] != nil {
			msg = be.Failed[idx[0]].Error()
		}
		switch {
		case len(be.Failed) < len(batch):
			om.setState(StatePartial, msg, true)
		case classes[output.Throttled] && !classes[output.Retryable] && !classes[output.Permanent]:
			om.setState(StateThrottled, msg, false)
		default:
			om.setState(StateFailing, msg, false)
		}
		return
	}
	c, _ := output.Classify(err)
	var classes [3]bool
	if c >= 0 && int(c) < len(classes) {
		classes[c] = true
	}
	om.countClasses(classes)
	if c != output.Permanent {
		om.Retries.Add(len(batch))
	}
	if c == output.Throttled {
		om.setState(StateThrottled, err.Error(), false)
	} else {
		om.setState(StateFailing, err.Error(), false)
	}
}

func (om *OutputMetrics) countClasses(c [3]bool) {
	if c[output.Retryable] {
		om.RetryableErrs.Inc()
	}
	if c[output.Throttled] {
		om.ThrottledErrs.Inc()
	}
	if c[output.Permanent] {
		om.PermanentErrs.Inc()
	}
}

func (om *OutputMetrics) delivered(batch [][]byte, failed map[int]error) {
	n, bytes := 0, 0
	for i, r := range batch {
		if _, bad := failed[i]; bad {
			continue
		}
		n++
		bytes += len(r)
	}
	om.RecordsOut.Add(n)
	om.BytesOut.Add(bytes)
}

// WrapDeadLetter returns dl with the records it takes counted as
// dead-lettered (and dropped, reason dead_lettered). A nil dl stays nil.
func (om *OutputMetrics) WrapDeadLetter(dl delivery.DeadLetter) delivery.DeadLetter {
	if dl == nil {
		return nil
	}
	return &countingDeadLetter{DeadLetter: dl, m: om}
}

type countingDeadLetter struct {
	delivery.DeadLetter
	m *OutputMetrics
}

func (d *countingDeadLetter) Write(output string, recs [][]byte, reasons []string) error {
	if err := d.DeadLetter.Write(output, recs, reasons); err != nil {
		return err
	}
	d.m.DeadLettered.Add(len(recs))
	return nil
}
