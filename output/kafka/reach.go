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
	"github.com/sidelog/sidelog/output"
)

// The blocked reasons while no broker answers: none could be reached, or
// (tls_error) every one failed the TLS certificate check, a configuration
// problem (tls.ca_file, server_name) rather than an outage.
const (
	reasonUnreachable = "broker_unreachable"
	reasonTLS         = "tls_error"
)

// reachability follows the producer's connection attempts (franz-go's
// OnBrokerConnect hook): the outcome of the last attempt to each broker
// address. When the last attempt to every address failed on the network
// (refused, timed out: a broker restart, an outage), no broker is reachable
// and the output is blocked on broker_unreachable (tls_error when every
// failure is the broker's certificate failing the check) until an attempt
// succeeds: /status, sidelog_output_blocked and the warning log show it
// while the records wait in the producer (they are not failed: franz-go
// keeps retrying them, in their idempotent sequence, until the broker is
// back). A broker that answers, even with an error (SASL), is reachable.
type reachability struct {
	output string

	mu      sync.Mutex
	last    map[string]error // address → the last attempt's network error (nil: connected)
	blocks  *delivery.BlockState
	entered string // the reason of the one Enter on blocks, to Exit ("": none)
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

// unreachable returns the blocked reason and its cause when no broker is
// reachable, else nil.
func (r *reachability) unreachable() (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.causeLocked()
}

// block returns err blocked on the reason no broker is reachable, or nil
// when one is.
func (r *reachability) block(err error) error {
	reason, cause := r.unreachable()
	if cause == nil {
		return nil
	}
	return delivery.Blocked(reason, fmt.Errorf("kafka: %w: %w", cause, err))
}

func (r *reachability) causeLocked() (string, error) {
	if len(r.last) == 0 {
		return "", nil
	}
	var cause error
	tlsOnly := true
	for _, err := range r.last {
		if err == nil {
			return "", nil
		}
		cause = err
		tlsOnly = tlsOnly && output.IsTLSError(err)
	}
	if tlsOnly {
		return reasonTLS, fmt.Errorf("the broker's certificate failed the TLS check (%v; see tls.ca_file and tls.server_name): records wait until it passes", cause)
	}
	if len(r.last) == 1 {
		return reasonUnreachable, fmt.Errorf("the broker is unreachable (%v): records wait until it answers", cause)
	}
	return reasonUnreachable, fmt.Errorf("none of the %d brokers is reachable (%v): records wait until one answers", len(r.last), cause)
}

// attempt records the outcome of one connection attempt to addr.
func (r *reachability) attempt(addr string, err error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
		return // the client's own end: says nothing about the broker
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
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
	reason, cause := r.causeLocked()
	if r.entered != "" && r.entered != reason {
		r.entered = ""
		r.blocks.Exit(r.output, "")
	}
	if cause != nil && r.entered == "" {
		r.entered = reason
		r.blocks.Enter(r.output, &delivery.BlockedError{Reason: reason, Err: fmt.Errorf("kafka: %w", cause)})
	}
}

func (r *reachability) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.entered != "" {
		r.entered = ""
		r.blocks.Exit(r.output, "")
	}
}

// connHook is the producer's kgo hook.
type connHook struct{ r *reachability }

var _ kgo.HookBrokerConnect = connHook{}

func (h connHook) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	h.r.attempt(net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port))), err)
}
