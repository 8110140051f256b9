package expression

import (
	"encoding/json"
	"math"
	"reflect"
	"sync"
	"testing"

	"github.com/sidelog/sidelog/event"
)

// The conditions answered without the VM give the VM's answer for every
// value a field can hold.
func TestFastConditionAgreesWithVM(t *testing.T) {
	cases := []struct {
		src  string
		fast bool
	}{
		{`level == "debug"`, true},
		{`"debug" == level`, true},
		{`level != "debug"`, true},
		{`level in ["warn", "error"]`, true},
		{`level in ["warn"]`, true},
		{`level in []`, true},
		{`level in ["a", "b", "c", "d", "e", "f", "g", "h", "warn"]`, true}, // hashed
		{`level in ["a", "b", "c", "d", "e", "f", "g", "warn"]`, true},      // compared one by one
		{`level == 5`, false},
		{`level == other`, false},
		{`meta.input == "app"`, false},
		{`level not in ["warn"]`, false},
		{`lower(level) == "debug"`, false},
		{`$env.level == "debug"`, false},
	}
	values := []any{nil, "debug", "warn", "error", "", "DEBUG", 5, int64(5), 5.0, true, []any{"debug"}, map[string]any{"a": "debug"}}
	for _, c := range cases {
		p := MustCompile(c.src, Bool)
		if (p.fast != nil) != c.fast {
			t.Errorf("%s: fast path %v, want %v", c.src, p.fast != nil, c.fast)
		}
		vm := MustCompile(c.src, Bool)
		vm.fast = nil
		for _, v := range append(values, "absent") {
			fields := map[string]any{"other": "debug"}
			if s, ok := v.(string); !ok || s != "absent" {
				fields["level"] = v
			}
			got, gerr := p.Bool(&event.Event{Fields: fields})
			want, werr := vm.Bool(&event.Event{Fields: fields})
			if got != want || (gerr == nil) != (werr == nil) {
				t.Errorf("%s with level %#v: %v, %v; the VM says %v, %v", c.src, v, got, gerr, want, werr)
			}
		}
	}
}

// The values computed without the VM are the VM's, value and type, for
// every value a field can hold (the VM answers the ones the fast path
// leaves to it, errors included); the fields may also be kept by the event
// without a map (AddField).
func TestFastArithAgreesWithVM(t *testing.T) {
	cases := []struct {
		src  string
		fast bool
	}{
		{`latency_ms / 1000`, true},
		{`latency_ms / 2.5`, true},
		{`1000 / latency_ms`, true},
		{`latency_ms / 0`, true},
		{`latency_ms * 3`, true},
		{`3 * latency_ms`, true},
		{`latency_ms * 0.5`, true},
		{`latency_ms * -2`, true},
		{`latency_ms + 1`, false},
		{`latency_ms / other`, false},
		{`$env.latency_ms / 1000`, false},
		{`meta.time.Unix() / 2`, false},
	}
	values := []any{nil, int64(0), int64(7), int64(-3), int64(math.MaxInt64), 5, 0.0, 12.5, -0.25, math.Inf(1),
		"12", true, uint64(4), int32(9), float32(1.5), json.Number("3"), []any{1}, map[string]any{"a": 1}, "absent"}
	for _, c := range cases {
		p := MustCompile(c.src, Any)
		if (p.arith != nil) != c.fast {
			t.Errorf("%s: fast path %v, want %v", c.src, p.arith != nil, c.fast)
		}
		vm := MustCompile(c.src, Any)
		vm.arith = nil
		for _, v := range values {
			for _, kept := range []bool{false, true} {
				mk := func() *event.Event { return fieldEvent("latency_ms", v, kept) }
				got, gerr := p.Eval(mk())
				want, werr := vm.Eval(mk())
				same := reflect.DeepEqual(got, want)
				if f, ok := got.(float64); ok && math.IsNaN(f) {
					w, ok := want.(float64)
					same = ok && math.IsNaN(w)
				}
				if !same || (gerr == nil) != (werr == nil) {
					t.Errorf("%s with %#v (kept %v): %#v (%T), %v; the VM says %#v (%T), %v", c.src, v, kept, got, got, gerr, want, want, werr)
				}
			}
		}
	}
}

// fieldEvent is a record with key = v and other = 2, its fields kept in
// the event (kept) or in a map; v "absent" leaves key out.
func fieldEvent(key string, v any, kept bool) *event.Event {
	e := &event.Event{}
	if s, ok := v.(string); ok && s == "absent" {
		e.AddField("other", int64(2))
	} else if kept {
		e.AddField(key, v)
		e.AddField("other", int64(2))
	} else {
		e.Fields = map[string]any{key: v, "other": int64(2)}
	}
	return e
}

// The numeric comparisons answered without the VM give the VM's answer
// (and its errors) for every value a field can hold.
func TestFastCmpAgreesWithVM(t *testing.T) {
	cases := []struct {
		src  string
		fast bool
	}{
		{`status >= 500`, true},
		{`status > 499`, true},
		{`status < 300`, true},
		{`status <= 299.5`, true},
		{`status == 200`, true},
		{`status != 200`, true},
		{`status == 200.0`, true},
		{`500 <= status`, true},
		{`300 > status`, true},
		{`0.5 == status`, true},
		{`status >= -1`, true},
		{`status >= other`, false},
		{`status + 1 > 2`, false},
		{`$env.status > 2`, false},
		{`status == "200"`, false},
	}
	values := []any{nil, int64(0), int64(200), int64(499), int64(500), int64(-3), int64(math.MaxInt64), int64(math.MinInt64),
		200, 500, 0.5, 299.5, 200.0, 499.9999, math.NaN(), math.Inf(1), math.Inf(-1),
		"200", true, uint64(500), int32(500), float32(500), json.Number("500"), []any{1}, map[string]any{"a": 1}, "absent"}
	for _, c := range cases {
		p := MustCompile(c.src, Bool)
		if (p.cmp != nil) != c.fast {
			t.Errorf("%s: fast path %v, want %v", c.src, p.cmp != nil, c.fast)
		}
		vm := MustCompile(c.src, Bool)
		vm.cmp = nil
		for _, v := range values {
			for _, kept := range []bool{false, true} {
				mk := func() *event.Event { return fieldEvent("status", v, kept) }
				got, gerr := p.Bool(mk())
				want, werr := vm.Bool(mk())
				if got != want || (gerr == nil) != (werr == nil) {
					t.Errorf("%s with %#v (kept %v): %v, %v; the VM says %v, %v", c.src, v, kept, got, gerr, want, werr)
				}
			}
		}
	}
}

// The values kept for small integer fields are the computed ones, also
// when evaluations run at once (go test -race).
func TestFastArithKeptValuesConcurrent(t *testing.T) {
	p := MustCompile(`latency_ms / 1000`, Any)
	q := MustCompile(`latency_ms * 3`, Any)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 3000 {
				ms := int64((i*7 + g) % 1100) // some beyond the kept range
				e := &event.Event{}
				e.AddField("latency_ms", ms)
				if v, err := p.Eval(e); err != nil || v != float64(ms)/1000 {
					t.Errorf("%d / 1000 = %#v, %v", ms, v, err)
					return
				}
				if v, err := q.Eval(e); err != nil || v != int(ms)*3 {
					t.Errorf("%d * 3 = %#v, %v", ms, v, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
