package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sidelog/sidelog/delivery"
)

// reasonUnreachable is the blocked reason while no broker answers.
const reasonUnreachable = "broker_unreachable"

// reachability follows the producer's connection attempts (franz-go's
// OnBrokerConnect hook): the outcome of the last attempt to each broker
// address. When the last attempt to every address failed on the network
// (refused, timed out: a broker restart, an outage), no broker is reachable
// and the output is blocked on broker_unreachable until an attempt
// succeeds: /status, sidelog_output_blocked and the warning log show it
// while the records wait in the producer (they are not failed: franz-go
// keeps retrying them, in their idempotent sequence, until the broker is
// back). A broker that answers, even with an error (SASL), is reachable.
type reachability struct {
	output string

	mu      sync.Mutex
	last    map[string]error // address → the last attempt's network error (nil: connected)
	blocks  *delivery.BlockState
	entered bool // one Enter on blocks, to Exit
	closed  bool
}

// WatchBlocks gives the output the agent's blocked state (the pipeline
// calls it before the first Write).
func (o *Output) WatchBlocks(s *delivery.BlockState, output string) {
	r := &o.reach
	r.mu.Lock()
	defer r.mu.Unlock()
	r.blocks, r.output = s, output
	r.syncLocked()
}

// unreachable returns the cause when no broker is reachable, else nil.
func (r *reachability) unreachable() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.causeLocked()
}

func (r *reachability) causeLocked() error {
	if len(r.last) == 0 {
		return nil
	}
	var cause error
	for _, err := range r.last {
		if err == nil {
			return nil
		}
		cause = err
	}
	if len(r.last) == 1 {
		return fmt.Errorf("the broker is unreachable (%v): records wait until it answers", cause)
	}
	return fmt.Errorf("none of the %d brokers is reachable (%v): records wait until one answers", len(r.last), cause)
}

// attempt records the outcome of one connection attempt to addr.
func (r *reachability) attempt(addr string, err error) {
	if err != nil && !networkError(err) {
		err = nil // the broker answered (an auth or protocol error)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.last[addr] = err
	r.syncLocked()
}

// syncLocked enters or exits the block to match the reachability.
func (r *reachability) syncLocked() {
	if r.blocks == nil {
		return
	}
	cause := r.causeLocked()
	switch {
	case cause != nil && !r.entered:
		r.entered = true
		r.blocks.Enter(r.output, &delivery.BlockedError{Reason: reasonUnreachable, Err: fmt.Errorf("kafka: %w", cause)})
	case cause == nil && r.entered:
		r.entered = false
		r.blocks.Exit(r.output, "")
	}
}

func (r *reachability) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.entered {
		r.entered = false
		r.blocks.Exit(r.output, "")
	}
}

// networkError: the broker did not answer (as opposed to an error it
// answered with, or the client's own end).
func networkError(err error) bool {
	var ke *kerr.Error
	switch {
	case errors.As(err, &ke),
		errors.Is(err, context.Canceled),
		errors.Is(err, kgo.ErrClientClosed):
		return false
	}
	return true
}

// connHook is the producer's kgo hook.
type connHook struct{ r *reachability }

var _ kgo.HookBrokerConnect = connHook{}

func (h connHook) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	h.r.attempt(net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port))), err)
}
