package tap

import (
	"strings"
	"sync"
	"testing"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/expression"
)

func ev(fields map[string]any) *event.Event {
	return &event.Event{Fields: fields, Input: "app", Flags: event.Modified}
}

func TestPublishWithoutSubscribersDoesNothing(t *testing.T) {
	h := NewHub()
	p := h.Point(KindInput, "app")
	e := ev(map[string]any{"a": 1})
	allocs := testing.AllocsPerRun(1000, func() { p.Publish(e) })
	if allocs != 0 {
		t.Fatalf("Publish with nobody listening allocates %v times", allocs)
	}
	var nilPoint *Point
	nilPoint.Publish(e) // a pipeline without a hub
	nilPoint.PublishBatch([]*event.Event{e})
	if nilPoint.Active() || p.Active() {
		t.Fatal("Active without subscribers")
	}
	var nilHub *Hub
	if nilHub.Point(KindInput, "x") != nil {
		t.Fatal("a nil hub must give nil points")
	}
}

func TestSubscribeWithCondition(t *testing.T) {
	h := NewHub()
	p := h.Point(KindOutput, "es")
	when := expression.MustCompile(`level == "error"`, expression.Bool)
	s, err := h.Subscribe("output:es", when, 10)
	if err != nil {
		t.Fatal(err)
	}
	all, err := h.Subscribe("output:es", nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Active() {
		t.Fatal("not active with subscribers")
	}
	p.PublishBatch([]*event.Event{
		ev(map[string]any{"level": "info", "n": 1}),
		ev(map[string]any{"level": "error", "n": 2}),
		ev(map[string]any{"n": 3}), // no level: the condition errs, so it is not shown
	})
	if got := drain(s); strings.Join(got, "|") != `{"level":"error","n":2}` {
		t.Fatalf("conditional subscriber got %q", got)
	}
	if got := drain(all); len(got) != 3 {
		t.Fatalf("unconditional subscriber got %q", got)
	}
	h.Unsubscribe(s)
	p.Publish(ev(map[string]any{"level": "error"}))
	if got := drain(s); len(got) != 0 {
		t.Fatalf("got records after Unsubscribe: %q", got)
	}
	if got := drain(all); len(got) != 1 {
		t.Fatalf("remaining subscriber got %q", got)
	}
	h.Unsubscribe(all)
	if p.Active() {
		t.Fatal("still active after every Unsubscribe")
	}
}

func drain(s *Subscriber) []string {
	var out []string
	for {
		select {
		case l := <-s.C:
			out = append(out, string(l))
		default:
			return out
		}
	}
}

func TestSlowSubscriberDropsAndCounts(t *testing.T) {
	h := NewHub()
	p := h.Point(KindInput, "app")
	s, _ := h.Subscribe("input:app", nil, 2)
	for i := range 5 {
		p.Publish(ev(map[string]any{"i": i}))
	}
	if got := drain(s); len(got) != 2 || got[0] != `{"i":0}` {
		t.Fatalf("got %q", got)
	}
	if s.Dropped() != 3 || h.Dropped() != 3 {
		t.Fatalf("dropped = %d (hub %d), want 3", s.Dropped(), h.Dropped())
	}
}

func TestUnknownPointAndReload(t *testing.T) {
	h := NewHub()
	p := h.Point(KindInput, "app")
	if _, err := h.Subscribe("input:nope", nil, 1); err == nil || !strings.Contains(err.Error(), "input:app") {
		t.Fatalf("unknown point: err = %v, want the known points listed", err)
	}
	s, _ := h.Subscribe("input:app", nil, 4)
	// A reload asks for the point again: same point, same subscribers.
	if h.Point(KindInput, "app") != p {
		t.Fatal("Point must return the same point for the same name")
	}
	h.Point(KindInput, "app").Publish(ev(map[string]any{"x": 1}))
	if len(drain(s)) != 1 {
		t.Fatal("subscriber lost across a reload")
	}
}

// A partially parsed event (only the keys the config uses) is completed
// before the condition runs and the record is shown whole.
func TestPartialEventIsCompleted(t *testing.T) {
	h := NewHub()
	p := h.Point(KindInput, "app")
	when := expression.MustCompile(`user == "bob"`, expression.Bool)
	s, _ := h.Subscribe("input:app", when, 4)
	e := &event.Event{Raw: []byte(`{"level":"info","user":"bob"}`), Fields: map[string]any{"level": "info"}}
	e.SetLazy(func(e *event.Event) { e.Fields["user"] = "bob" })
	p.Publish(e)
	if got := drain(s); len(got) != 1 || got[0] != `{"level":"info","user":"bob"}` {
		t.Fatalf("got %q", got)
	}
}

func TestConcurrentPublishSubscribe(t *testing.T) {
	h := NewHub()
	p := h.Point(KindInput, "app")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					p.Publish(ev(map[string]any{"k": "v"}))
				}
			}
		}()
	}
	for range 200 {
		s, err := h.Subscribe("input:app", nil, 8)
		if err != nil {
			t.Fatal(err)
		}
		drain(s)
		h.Unsubscribe(s)
	}
	close(stop)
	wg.Wait()
}

func BenchmarkPublishIdle(b *testing.B) {
	h := NewHub()
	p := h.Point(KindInput, "app")
	e := ev(map[string]any{"a": 1})
	b.ReportAllocs()
	for b.Loop() {
		p.Publish(e)
	}
}

func BenchmarkPublishOneSubscriber(b *testing.B) {
	h := NewHub()
	p := h.Point(KindInput, "app")
	s, _ := h.Subscribe("input:app", nil, 1<<20)
	e := &event.Event{Raw: []byte(`{"level":"info","msg":"hello world","n":42}`), Flags: event.RawJSON}
	b.ReportAllocs()
	for b.Loop() {
		p.Publish(e)
		select {
		case <-s.C:
		default:
		}
	}
}
