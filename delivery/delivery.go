// Package delivery runs each output's delivery loop: buffer → batch → retry
// with jittered backoff → send, with permanent failures written to the
// output's dead-letter files.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/sidelog/sidelog/buffer"
	"github.com/sidelog/sidelog/config/units"
	"github.com/sidelog/sidelog/output"
)

// Defaults of the `batch:` and `retry:` blocks.
const (
	DefaultMaxEvents    = 1000
	DefaultMaxBytes     = 5 << 20
	DefaultTimeout      = time.Second
	DefaultLinger       = 25 * time.Millisecond
	DefaultRetryInitial = 500 * time.Millisecond
	DefaultRetryMax     = 30 * time.Second
)

// BatchConfig is the `batch:` block of an output.
//
// Natural batching: the loop reads a batch only when a send slot is free
// (max_in_flight). Then a batch leaves at once when max_events/max_bytes or
// min_events records wait, else when the oldest record has waited linger;
// timeout bounds that wait too. Under load, records pile up while every
// slot is busy and batches fill by themselves; at low rates a record waits
// about linger, not timeout.
type BatchConfig struct {
	MaxEvents int           `yaml:"max_events"`
	MaxBytes  units.Size    `yaml:"max_bytes"`
	Timeout   time.Duration `yaml:"timeout"`
	// MinEvents: with a free slot, this many records waiting are sent at
	// once (default: max_events, i.e. only a full batch is).
	MinEvents int `yaml:"min_events"`
	// Linger: with a free slot, records are sent once the oldest has
	// waited this long (default DefaultLinger; at most timeout).
	Linger time.Duration `yaml:"linger"`
}

// Validate checks the values that the types alone cannot.
func (c *BatchConfig) Validate() error {
	var errs []error
	if c.MaxEvents < 0 {
		errs = append(errs, errors.New("max_events: must not be negative"))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, errors.New("max_bytes: must not be negative"))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout: must not be negative"))
	}
	if c.MinEvents < 0 {
		errs = append(errs, errors.New("min_events: must not be negative"))
	}
	if c.Linger < 0 {
		errs = append(errs, errors.New("linger: must not be negative"))
	}
	return errors.Join(errs...)
}

// RetryConfig is the `retry:` block of an output.
type RetryConfig struct {
	Initial    time.Duration `yaml:"initial"`
	Max        time.Duration `yaml:"max"`
	MaxElapsed time.Duration `yaml:"max_elapsed"` // 0: retry until delivered
}

// Validate checks the values that the types alone cannot.
func (c *RetryConfig) Validate() error {
	var errs []error
	if c.Initial < 0 || c.Max < 0 || c.MaxElapsed < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	if c.Initial > 0 && c.Max > 0 && c.Max < c.Initial {
		errs = append(errs, fmt.Errorf("max (%s) must not be below initial (%s)", c.Max, c.Initial))
	}
	return errors.Join(errs...)
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
	// SourceHeaders: every record starts with a source header (see
	// AppendSource), stripped before Write and kept for the dead letters.
	SourceHeaders bool
	// MaxInFlight is the number of batches sent concurrently (default 1).
	// Batches are acknowledged to the buffer as they complete, out of order.
	MaxInFlight int
	// Blocks receives the output's blocked state (nil: a private one).
	Blocks *BlockState
	// MaxParked bounds the batches whose remaining records are all blocked
	// (see BlockedError) and that wait aside, unacknowledged, so that the
	// records of other keys keep flowing (default DefaultMaxParked), and
	// MaxParkedBytes their size (default DefaultMaxParkedBytes). Past
	// either the output pauses. Only one parked batch per blocked key
	// retries at its backoff; the others wait for it (BlockState.follow),
	// so a long block costs one request per backoff, not one per batch.
	MaxParked      int
	MaxParkedBytes int64
}

// DefaultMaxParked and DefaultMaxParkedBytes are the defaults of
// Runner.MaxParked and Runner.MaxParkedBytes: with 500-record batches of
// 300-byte lines, 16 MiB holds about 50,000 records of a blocked index
// while the output's other indices keep flowing.
const (
	DefaultMaxParked            = 4096
	DefaultMaxParkedBytes int64 = 16 << 20
)

func (r *Runner) limits() buffer.Limits {
	l := buffer.Limits{MaxEvents: r.Batch.MaxEvents, MaxBytes: int(r.Batch.MaxBytes), Timeout: r.Batch.Timeout, MinEvents: r.Batch.MinEvents, Linger: r.Batch.Linger}
	if l.MaxEvents == 0 {
		l.MaxEvents = DefaultMaxEvents
	}
	if l.MaxBytes == 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.Timeout == 0 {
		l.Timeout = DefaultTimeout
	}
	if l.Linger == 0 {
		l.Linger = DefaultLinger
	}
	return l
}

// Run delivers until the buffer is sealed and drained (returns nil) or ctx
// is done (returns ctx.Err(); undelivered records stay in the buffer: on
// disk for the next start, or unacknowledged so the inputs read them again).
func (r *Runner) Run(ctx context.Context) error {
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	if r.Blocks == nil {
		r.Blocks = NewBlockState(r.Logger)
	}
	lim := r.limits()
	n := max(r.MaxInFlight, 1)
	slots := make(chan struct{}, n)
	parkedMax := r.MaxParked
	if parkedMax <= 0 {
		parkedMax = DefaultMaxParked
	}
	parkedMaxBytes := r.MaxParkedBytes
	if parkedMaxBytes <= 0 {
		parkedMaxBytes = DefaultMaxParkedBytes
	}
	var parkMu sync.Mutex
	parkedN, parkedBytes := 0, int64(0)
	var wg sync.WaitGroup
	defer wg.Wait()
	readBackoff := 100 * time.Millisecond
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		b, err := r.Buf.Read(ctx, lim)
		if err != nil {
			<-slots
			switch {
			case errors.Is(err, buffer.ErrDrained), errors.Is(err, buffer.ErrClosed):
				return nil
			case ctx.Err() != nil:
				return ctx.Err()
			}
			// A buffer read error (disk): report, wait, try again.
			r.Logger.Error("buffer read failed", "output", r.Name, "error", err, "retry_in", readBackoff.String())
			if !sleep(ctx, readBackoff) {
				return ctx.Err()
			}
			readBackoff = min(2*readBackoff, 10*time.Second)
			continue
		}
		readBackoff = 100 * time.Millisecond
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A batch whose remaining records are all blocked gives its
			// slot back (it parks) so that other keys keep flowing, once
			// a parking place is free.
			isParked := false
			var size int64
			for _, rec := range b.Records {
				size += int64(len(rec))
			}
			park := func() bool {
				if isParked {
					return true
				}
				parkMu.Lock()
				// The first parked batch always fits, whatever its size.
				ok := parkedN < parkedMax && (parkedN == 0 || parkedBytes+size <= parkedMaxBytes)
				if ok {
					parkedN++
					parkedBytes += size
				}
				parkMu.Unlock()
				if !ok {
					return false // every place taken: keep the slot, the output pauses
				}
				isParked = true
				<-slots
				return true
			}
			defer func() {
				if isParked {
					parkMu.Lock()
					parkedN--
					parkedBytes -= size
					parkMu.Unlock()
				} else {
					<-slots
				}
			}()
			if err := r.deliver(ctx, b.Records, park); err != nil {
				return // ctx done: the batch stays unacknowledged
			}
			if err := r.Buf.Ack(b); err != nil {
				r.Logger.Error("buffer ack failed", "output", r.Name, "error", err)
			}
		}()
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Backoff returns the wait before retry number attempt (0-based): a random
// duration between half and all of initial·2^attempt, capped at max, and at
// least retryAfter.
func Backoff(initial, maxWait time.Duration, attempt int, retryAfter time.Duration) time.Duration {
	b := initial
	for i := 0; i < attempt && b < maxWait; i++ {
		b *= 2
	}
	b = min(b, maxWait)
	d := b/2 + time.Duration(rand.Int64N(int64(b/2)+1))
	return max(d, retryAfter)
}

// splitPool holds the arrays of records without their source headers that
// deliver hands to the output (one per batch in flight).
var splitPool = sync.Pool{New: func() any { return new([][]byte) }}

// deliver sends recs until each is delivered or dead-lettered. It returns
// only ctx's error. park is called when every record left is blocked.
func (r *Runner) deliver(ctx context.Context, recs [][]byte, park func() bool) error {
	if r.Blocks == nil {
		r.Blocks = NewBlockState(r.Logger)
	}
	h := &holds{s: r.Blocks, output: r.Name}
	defer h.clear()
	initial := r.Retry.Initial
	if initial <= 0 {
		initial = DefaultRetryInitial
	}
	maxB := r.Retry.Max
	if maxB <= 0 {
		maxB = DefaultRetryMax
	}
	maxB = max(maxB, initial)
	start := time.Now()
	// full are the records as buffered (with their source headers, if
	// any); pending what Write gets. They stay index-aligned.
	full := recs
	pending := recs
	if r.SourceHeaders {
		sp := splitPool.Get().(*[][]byte)
		split := slices.Grow((*sp)[:0], len(recs))[:len(recs)]
		defer func() {
			clear(split)
			*sp = split[:0]
			splitPool.Put(sp)
		}()
		for i, rec := range recs {
			_, split[i] = SplitSource(rec)
		}
		pending = split
	}
	for attempt := 0; len(pending) > 0; attempt++ {
		err := r.Out.Write(ctx, pending)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var wait time.Duration
		var retry, retryFull, dead [][]byte
		var reasons []string
		var blocked map[string]*BlockedError
		// isBlocked[i] for retry[i]
		var isBlocked []bool
		var be *output.BatchError
		if errors.As(err, &be) {
			for i, rec := range pending {
				ferr, failed := be.Failed[i]
				if !failed {
					continue
				}
				if b, ok := AsBlocked(ferr); ok {
					if blocked == nil {
						blocked = map[string]*BlockedError{}
					}
					blocked[b.Key] = b
					retry = append(retry, rec)
					retryFull = append(retryFull, full[i])
					isBlocked = append(isBlocked, true)
					continue
				}
				c, after := output.Classify(ferr)
				if c == output.Permanent {
					dead = append(dead, full[i])
					reasons = append(reasons, ferr.Error())
					continue
				}
				retry = append(retry, rec)
				retryFull = append(retryFull, full[i])
				isBlocked = append(isBlocked, false)
				wait = max(wait, after)
			}
		} else if b, ok := AsBlocked(err); ok {
			blocked = map[string]*BlockedError{b.Key: b}
			retry, retryFull = pending, full
			isBlocked = make([]bool, len(pending))
			for i := range isBlocked {
				isBlocked[i] = true
			}
		} else {
			c, after := output.Classify(err)
			if c == output.Permanent {
				dead = full
				for range pending {
					reasons = append(reasons, err.Error())
				}
			} else {
				retry, retryFull = pending, full
				isBlocked = make([]bool, len(pending))
				wait = after
			}
		}
		h.set(blocked)
		if len(dead) > 0 {
			if err := r.deadLetter(ctx, dead, reasons); err != nil {
				return err
			}
		}
		if len(retry) == 0 {
			return nil
		}
		if r.Retry.MaxElapsed > 0 && time.Since(start) > r.Retry.MaxElapsed {
			// Blocked records are exempt: they wait for the cause to be
			// fixed, never for the dead-letter file.
			var keep, keepFull, give [][]byte
			var keepBlocked []bool
			for i, rec := range retry {
				if isBlocked[i] {
					keep, keepFull = append(keep, rec), append(keepFull, retryFull[i])
					keepBlocked = append(keepBlocked, true)
				} else {
					give = append(give, retryFull[i])
				}
			}
			if len(give) > 0 {
				r.Logger.Error("giving up after retry.max_elapsed", "output", r.Name, "records", len(give), "error", err)
				rs := make([]string, len(give))
				for i := range rs {
					rs[i] = "retry.max_elapsed exceeded: " + err.Error()
				}
				if err := r.deadLetter(ctx, give, rs); err != nil {
					return err
				}
			}
			if len(keep) == 0 {
				return nil
			}
			retry, retryFull, isBlocked = keep, keepFull, keepBlocked
		}
		allBlocked := true
		for _, b := range isBlocked {
			allBlocked = allBlocked && b
		}
		d := Backoff(initial, maxB, attempt, wait)
		if allBlocked && park != nil && park() {
			// Parked: if other deliveries already retry every key these
			// records wait on, wait for them (at most the backoff cap).
			if wake, ok := r.Blocks.follow(r.Name, h, blocked); ok {
				r.Logger.Debug("delivery blocked, waiting for the key's retry", "output", r.Name, "records", len(retry), "error", err)
				t := time.NewTimer(maxB)
				select {
				case <-wake:
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return ctx.Err()
				}
				t.Stop()
				pending, full = retry, retryFull
				continue
			}
		}
		if len(blocked) > 0 {
			r.Logger.Debug("delivery blocked, retrying", "output", r.Name, "records", len(retry), "in", d.String(), "error", err)
		} else {
			r.Logger.Warn("delivery failed, retrying", "output", r.Name, "records", len(retry), "in", d.String(), "error", err)
		}
		if !sleep(ctx, d) {
			return ctx.Err()
		}
		pending, full = retry, retryFull
	}
	return nil
}

// deadLetter writes records to the dead-letter files, retrying while that
// fails (a full disk): the batch is acknowledged only once they are there.
func (r *Runner) deadLetter(ctx context.Context, recs [][]byte, reasons []string) error {
	if r.DeadLetter == nil {
		r.Logger.Error("records failed permanently and no dead-letter file is configured: dropped", "output", r.Name, "records", len(recs), "reason", reasons[0])
		return nil
	}
	wait := 100 * time.Millisecond
	h := &holds{s: r.Blocks, output: r.Name}
	defer h.clear()
	for {
		err := r.DeadLetter.Write(r.Name, recs, reasons)
		if err == nil {
			return nil
		}
		if b, ok := AsBlocked(err); ok {
			// dead_letter.when_full: block: the output pauses, shown as
			// blocked; the log line is the block's.
			if b.Key == "" {
				b = &BlockedError{Key: "dead-letter", Reason: b.Reason, Err: b.Err}
			}
			h.set(map[string]*BlockedError{b.Key: b})
		} else {
			r.Logger.Error("dead-letter write failed, retrying", "output", r.Name, "records", len(recs), "error", err, "retry_in", wait.String())
		}
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
		wait = min(2*wait, 10*time.Second)
	}
}
