package delivery

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"
)

// The "output blocked" state.
//
// An output is blocked when its destination refuses records for a reason
// that is not the records' fault and that retrying alone will not cure
// quickly: a write block on an index, an index that does not exist with
// auto-creation off, missing privileges, a missing ingest pipeline, a full
// dead-letter directory. Such records are never dead-lettered: they stay in
// the buffer and are retried with backoff until the cause is fixed, and the
// state is visible while it lasts (/status, the gauge
// sidelog_output_blocked{output,reason}, a warning log line when it starts
// and when it ends).
//
// An output signals it by returning a *BlockedError, for the whole Write or
// for single records inside an output.BatchError:
//
//	return delivery.Blocked("cluster_block_exception", err)            // the whole output
//	failed[i] = delivery.BlockedOn("app-2026.12.02", "index_not_found_exception", err) // one key
//
// A key names what is blocked inside the output (an index, a topic); records
// of other keys keep flowing. The Runner keeps the state in a BlockState
// (one per agent, shared with metrics and /status).

// BlockedError marks records that the destination refuses for a
// configuration reason: retried with backoff, never dead-lettered, not
// subject to retry.max_elapsed.
type BlockedError struct {
	// Key is what is blocked inside the output ("" for the whole output).
	Key string
	// Reason is a short machine-readable cause: the engine's error type
	// (cluster_block_exception), or dead_letter_full.
	Reason string
	Err    error
}

func (e *BlockedError) Error() string { return e.Err.Error() }
func (e *BlockedError) Unwrap() error { return e.Err }

// Blocked returns err marked as blocking the whole output for reason.
func Blocked(reason string, err error) error {
	return &BlockedError{Reason: reason, Err: err}
}

// BlockedOn returns err marked as blocking only key (an index, a topic) of
// the output for reason.
func BlockedOn(key, reason string, err error) error {
	return &BlockedError{Key: key, Reason: reason, Err: err}
}

// AsBlocked returns the *BlockedError in err's chain, if any.
func AsBlocked(err error) (*BlockedError, bool) {
	var b *BlockedError
	if errors.As(err, &b) {
		return b, true
	}
	return nil, false
}

// Block is one current block of an output.
type Block struct {
	Output  string    `json:"-"`
	Key     string    `json:"key,omitempty"`
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
	Since   time.Time `json:"since"`
}

// BlockState holds the current blocks of every output of an agent. Each
// block is held by the deliveries stuck on it and ends when the last one
// lets go. It is safe for concurrent use; the zero value is not: use
// NewBlockState.
type BlockState struct {
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	blocks  map[blockID]*blockEntry
	reasons map[string]map[string]bool // output → every reason seen (for the gauge's zeros)
}

type blockID struct{ output, key string }

type blockEntry struct {
	Block
	holders int
	// leader is the delivery that retries this key at its backoff; the
	// others holding it (parked batches) wait on wake instead of sending
	// doomed requests of their own (follow).
	leader *holds
	wake   chan struct{}
}

// NewBlockState returns an empty state that logs on log (nil: discarded).
func NewBlockState(log *slog.Logger) *BlockState {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &BlockState{log: log, now: time.Now, blocks: map[blockID]*blockEntry{}, reasons: map[string]map[string]bool{}}
}

// hold marks output's key blocked for reason by one more holder (or updates
// the message of a block already held). The first holder logs a warning.
func (s *BlockState) hold(output string, b *BlockedError, first bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := blockID{output, b.Key}
	e := s.blocks[id]
	if e == nil {
		e = &blockEntry{Block: Block{Output: output, Key: b.Key, Reason: b.Reason, Message: b.Error(), Since: s.now()}}
		s.blocks[id] = e
		if s.reasons[output] == nil {
			s.reasons[output] = map[string]bool{}
		}
		s.reasons[output][b.Reason] = true
		s.log.Warn("output blocked: records are kept and retried until the cause is fixed", "output", output, "key", b.Key, "reason", b.Reason, "error", b.Error())
	} else {
		e.Message = b.Error()
		if e.Reason != b.Reason {
			s.reasons[output][b.Reason] = true
			e.Reason = b.Reason
		}
	}
	if first {
		e.holders++
	}
}

// release drops one holder of output's key; the last one ends the block
// and logs it.
func (s *BlockState) release(output, key string, by *holds) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := blockID{output, key}
	e := s.blocks[id]
	if e == nil {
		return
	}
	e.holders--
	// The leader letting go (its records of this key went through, or
	// it ended): the followers try again now, and one of them leads.
	if by == nil || e.leader == by || e.holders == 0 {
		s.wakeLocked(e)
	}
	if e.holders > 0 {
		return
	}
	delete(s.blocks, id)
	s.log.Warn("output unblocked", "output", output, "key", key, "reason", e.Reason, "blocked_for", s.now().Sub(e.Since).Round(time.Millisecond).String())
}

// Enter marks output's b.Key blocked for one more holder, for components
// that see a block outside a Write (a client's background connection).
// The Runner does this itself for the BlockedErrors that Write returns.
// Every Enter needs one Exit.
func (s *BlockState) Enter(output string, b *BlockedError) { s.hold(output, b, true) }

// wakeLocked ends the current wait of e's followers (s.mu held).
func (s *BlockState) wakeLocked(e *blockEntry) {
	e.leader = nil
	if e.wake != nil {
		close(e.wake)
		e.wake = nil
	}
}

// follow is asked by delivery h whose remaining records are all blocked,
// on keys. If another delivery already leads (retries) every one of them,
// it returns a channel closed when the first key's leader lets go, and
// true: h waits on it (or at most its own backoff cap) instead of sending.
// Otherwise h becomes the leader of the keys without one and retries
// itself (nil, false).
func (s *BlockState) follow(output string, h *holds, keys map[string]*BlockedError) (<-chan struct{}, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ch chan struct{}
	follower := true
	for k := range keys {
		e := s.blocks[blockID{output, k}]
		if e == nil {
			follower = false
			continue
		}
		if e.leader == nil || e.leader == h {
			e.leader = h
			follower = false
			continue
		}
		if ch == nil {
			if e.wake == nil {
				e.wake = make(chan struct{})
			}
			ch = e.wake
		}
	}
	if !follower || ch == nil {
		return nil, false
	}
	return ch, true
}

// Exit ends one holder's block of output's key (the last one ends it).
func (s *BlockState) Exit(output, key string) { s.release(output, key, nil) }

// Blocks returns output's current blocks, oldest first.
func (s *BlockState) Blocks(output string) []Block {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Block
	for id, e := range s.blocks {
		if id.output == output {
			out = append(out, e.Block)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Since.Equal(out[j].Since) {
			return out[i].Since.Before(out[j].Since)
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// Gauge returns, for each output and each reason it was ever blocked for,
// the number of its keys blocked for that reason now (0 once it ended): the
// values of sidelog_output_blocked{output,reason}.
func (s *BlockState) Gauge() map[string]map[string]int {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := make(map[string]map[string]int, len(s.reasons))
	for out, rs := range s.reasons {
		m := make(map[string]int, len(rs))
		for r := range rs {
			m[r] = 0
		}
		g[out] = m
	}
	for id, e := range s.blocks {
		g[id.output][e.Reason]++
	}
	return g
}

// holds is one delivery's set of blocks: the keys its records are stuck
// on. It is used by a single goroutine.
type holds struct {
	s      *BlockState
	output string
	keys   map[string]bool
}

// set makes the delivery hold exactly the blocks of now (key → error),
// releasing those it no longer meets.
func (h *holds) set(now map[string]*BlockedError) {
	for k := range h.keys {
		if now[k] == nil {
			h.s.release(h.output, k, h)
			delete(h.keys, k)
		}
	}
	for k, b := range now {
		first := !h.keys[k]
		if first {
			if h.keys == nil {
				h.keys = map[string]bool{}
			}
			h.keys[k] = true
		}
		h.s.hold(h.output, b, first)
	}
}

func (h *holds) clear() { h.set(nil) }

// blockedReason is the text of the dead-letter full error.
func deadLetterFullError(dir string, total, maxBytes int64) error {
	return Blocked("dead_letter_full", fmt.Errorf("dead-letter directory %s holds %d bytes, at dead_letter.max_bytes (%d) and dead_letter.when_full is block: the output is paused until files are replayed (sidelog dead-letter replay) or removed", dir, total, maxBytes))
}
