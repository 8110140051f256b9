// Package tap lets a debugging client watch the records passing a point of
// the pipeline (after an input's parser, or as routed to an output) while
// the agent runs.
//
// The pipeline publishes to pre-resolved points on its hot path; with no
// subscriber a Publish costs one atomic load. A subscriber has a bounded
// channel of encoded records; when it falls behind, records are dropped for
// it (never for the pipeline, which never waits on a tap) and counted.
package tap

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/expression"
)

// Kinds of points.
const (
	KindInput  = "input"  // records of an input after its parser, before filters
	KindOutput = "output" // records routed to an output, before encoding
)

// Hub holds the points of one agent and their subscribers.
type Hub struct {
	mu     sync.Mutex
	points map[string]*Point
	// dropped counts records dropped for slow subscribers, all points.
	dropped atomic.Uint64
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{points: map[string]*Point{}} }

// PointName is the name of a point: "input:app", "output:es".
func PointName(kind, name string) string { return kind + ":" + name }

// Point is one place records are published. Get it once with Hub.Point and
// keep it: Publish on it is the hot-path call.
type Point struct {
	name string
	hub  *Hub
	subs atomic.Pointer[[]*Subscriber] // nil or empty: nobody listens
}

// Point returns the point kind:name, creating it. Calling it again with the
// same name (a reload) returns the same point, with its subscribers.
func (h *Hub) Point(kind, name string) *Point {
	if h == nil {
		return nil
	}
	n := PointName(kind, name)
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.points[n]
	if !ok {
		p = &Point{name: n, hub: h}
		h.points[n] = p
	}
	return p
}

// Points lists the names of the known points, sorted.
func (h *Hub) Points() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.points))
	for n := range h.points {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Dropped returns how many records were dropped for slow subscribers.
func (h *Hub) Dropped() uint64 { return h.dropped.Load() }

// Active reports whether p has a subscriber. Publishers may use it to skip
// work (a loop over a batch) when nobody listens.
func (p *Point) Active() bool {
	if p == nil {
		return false
	}
	s := p.subs.Load()
	return s != nil && len(*s) > 0
}

// Publish offers e to the point's subscribers. Call it while you own e (in
// the worker, before handing e on); Publish does not keep e. With
// subscribers it encodes e once (event.AppendJSON, completing partial
// fields) and evaluates each subscriber's condition; it never blocks.
func (p *Point) Publish(e *event.Event) {
	if p == nil {
		return
	}
	s := p.subs.Load()
	if s == nil || len(*s) == 0 {
		return
	}
	p.publish(*s, e)
}

// PublishBatch publishes every event of a batch.
func (p *Point) PublishBatch(batch []*event.Event) {
	if p == nil {
		return
	}
	s := p.subs.Load()
	if s == nil || len(*s) == 0 {
		return
	}
	for _, e := range batch {
		p.publish(*s, e)
	}
}

func (p *Point) publish(subs []*Subscriber, e *event.Event) {
	if e.Partial {
		e.Full() // a condition may read any field, and the line shows them all
	}
	var line []byte
	for _, s := range subs {
		if s.when != nil {
			ok, err := s.when.Bool(e)
			if err != nil || !ok {
				continue
			}
		}
		if line == nil {
			line = event.AppendJSON(make([]byte, 0, len(e.Raw)+64), e)
		}
		select {
		case s.ch <- line:
		default:
			s.dropped.Add(1)
			p.hub.dropped.Add(1)
		}
	}
}

// Subscriber receives the encoded records (one JSON object each, no
// newline) passing a point that its condition accepts.
type Subscriber struct {
	// C delivers the records. It is never closed: stop reading after
	// Unsubscribe.
	C       <-chan []byte
	ch      chan []byte
	when    *expression.Program
	point   *Point
	dropped atomic.Uint64
}

// Dropped returns how many records were dropped because the subscriber was
// slow.
func (s *Subscriber) Dropped() uint64 { return s.dropped.Load() }

// Subscribe attaches a subscriber to the point named name ("output:es"),
// with an optional compiled condition and a channel of capacity buf. An
// unknown point is an error naming the known ones.
func (h *Hub) Subscribe(name string, when *expression.Program, buf int) (*Subscriber, error) {
	if buf <= 0 {
		buf = 1024
	}
	h.mu.Lock()
	p, ok := h.points[name]
	h.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("no point %q (known: %v)", name, h.Points())
	}
	ch := make(chan []byte, buf)
	s := &Subscriber{C: ch, ch: ch, when: when, point: p}
	h.mu.Lock()
	defer h.mu.Unlock()
	old := p.subs.Load()
	var next []*Subscriber
	if old != nil {
		next = append(next, *old...)
	}
	next = append(next, s)
	p.subs.Store(&next)
	return s, nil
}

// Unsubscribe detaches s. Publishers may still send to s.C briefly; nobody
// waits on it.
func (h *Hub) Unsubscribe(s *Subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := s.point.subs.Load()
	if old == nil {
		return
	}
	next := make([]*Subscriber, 0, len(*old))
	for _, x := range *old {
		if x != s {
			next = append(next, x)
		}
	}
	s.point.subs.Store(&next)
}
