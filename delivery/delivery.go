// Package delivery runs each output's delivery loop: buffer → batch → retry
// with jittered backoff → send, with permanent failures written to the
// output's dead-letter file.
package delivery

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/sidelog/sidelog/buffer"
	"github.com/sidelog/sidelog/config/units"
	"github.com/sidelog/sidelog/output"
)

// BatchConfig is the `batch:` block of an output.
type BatchConfig struct {
	MaxEvents int           `yaml:"max_events"`
	MaxBytes  units.Size    `yaml:"max_bytes"`
	Timeout   time.Duration `yaml:"timeout"`
}

// RetryConfig is the `retry:` block of an output.
type RetryConfig struct {
	Initial    time.Duration `yaml:"initial"`
	Max        time.Duration `yaml:"max"`
	MaxElapsed time.Duration `yaml:"max_elapsed"` // 0: retry until delivered
}

// DeadLetter receives records that can never be delivered.
type DeadLetter interface {
	Write(output string, recs [][]byte, reasons []string) error
}

// Runner delivers one output's buffered records.
type Runner struct {
	Name       string
	Out        output.Output
	Buf        buffer.Buffer
	Batch      BatchConfig
	Retry      RetryConfig
	DeadLetter DeadLetter
	Logger     *slog.Logger
}

// Run delivers until the buffer is sealed and drained (returns nil) or ctx
// is done (returns ctx.Err(); undelivered records stay in the buffer).
func (r *Runner) Run(ctx context.Context) error {
	lim := buffer.Limits{MaxEvents: r.Batch.MaxEvents, MaxBytes: int(r.Batch.MaxBytes), Timeout: r.Batch.Timeout}
	for {
		b, err := r.Buf.Read(ctx, lim)
		if errors.Is(err, buffer.ErrDrained) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := r.deliver(ctx, b.Records); err != nil {
			return err
		}
		if err := r.Buf.Ack(b); err != nil {
			return err
		}
	}
}

// deliver sends recs until each is delivered or dead-lettered.
func (r *Runner) deliver(ctx context.Context, recs [][]byte) error {
	backoff := r.Retry.Initial
	if backoff <= 0 {
		backoff = 500 * time.Millisecond
	}
	maxB := r.Retry.Max
	if maxB <= 0 {
		maxB = 30 * time.Second
	}
	start := time.Now()
	pending := recs
	for len(pending) > 0 {
		err := r.Out.Write(ctx, pending)
		if err == nil {
			return nil
		}
		var wait time.Duration
		var retry [][]byte
		var dead [][]byte
		var reasons []string
		var be *output.BatchError
		if errors.As(err, &be) {
			for i, rec := range pending {
				ferr, failed := be.Failed[i]
				if !failed {
					continue
				}
				c, after := output.Classify(ferr)
				if c == output.Permanent {
					dead = append(dead, rec)
					reasons = append(reasons, ferr.Error())
					continue
				}
				retry = append(retry, rec)
				wait = max(wait, after)
			}
		} else {
			c, after := output.Classify(err)
			if c == output.Permanent {
				dead = pending
				for range pending {
					reasons = append(reasons, err.Error())
				}
			} else {
				retry = pending
				wait = after
			}
		}
		if len(dead) > 0 {
			if r.DeadLetter == nil {
				r.Logger.Error("records failed permanently and no dead-letter file is configured", "output", r.Name, "records", len(dead), "reason", reasons[0])
			} else if derr := r.DeadLetter.Write(r.Name, dead, reasons); derr != nil {
				return derr
			}
		}
		if len(retry) == 0 {
			return nil
		}
		if r.Retry.MaxElapsed > 0 && time.Since(start) > r.Retry.MaxElapsed {
			r.Logger.Error("giving up after retry.max_elapsed", "output", r.Name, "records", len(retry), "error", err)
			if r.DeadLetter != nil {
				rs := make([]string, len(retry))
				for i := range rs {
					rs[i] = "retry.max_elapsed exceeded: " + err.Error()
				}
				if derr := r.DeadLetter.Write(r.Name, retry, rs); derr != nil {
					return derr
				}
			}
			return nil
		}
		// Full jitter between backoff/2 and backoff, at least Retry-After.
		d := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
		d = max(d, wait)
		r.Logger.Warn("delivery failed, retrying", "output", r.Name, "records", len(retry), "in", d.String(), "error", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(backoff*2, maxB)
		pending = retry
	}
	return nil
}
