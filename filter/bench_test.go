package filter_test

import (
	"maps"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/expression"
	"github.com/sidelog/sidelog/filter/drop"
	"github.com/sidelog/sidelog/filter/internal/example"
	"github.com/sidelog/sidelog/filter/keep"
	"github.com/sidelog/sidelog/filter/kubernetes"
	"github.com/sidelog/sidelog/filter/modify"
	"github.com/sidelog/sidelog/filter/redact"
	"github.com/sidelog/sidelog/filter/sample"
	"github.com/sidelog/sidelog/filter/throttle"
	"github.com/sidelog/sidelog/plugins"
)

// The engine's per-record work after parsing: the filter chain (with its
// `when` semantics, as in example.Chain) and one route expression per
// output. Records are realistic parsed JSON lines.

func registry() *plugins.Registry {
	return example.Registry(map[string]plugins.Filter{
		"drop": drop.Plugin, "keep": keep.Plugin, "modify": modify.Plugin, "redact": redact.Plugin,
		"kubernetes": kubernetes.Plugin, "sample": sample.Plugin, "throttle": throttle.Plugin,
	})
}

func build(b *testing.B, filters string, routes ...string) (example.Chain, []*expression.Program) {
	reg := registry()
	cfg, err := example.Parse("bench.yaml", filters, reg)
	if err != nil {
		b.Fatal(err)
	}
	chain, err := example.Build(cfg, reg)
	if err != nil {
		b.Fatal(err)
	}
	var progs []*expression.Program
	for _, r := range routes {
		progs = append(progs, expression.MustCompile(r, expression.Bool))
	}
	return chain, progs
}

func record(level string) map[string]any {
	return map[string]any{
		"ts": "2024-05-01T12:00:00.123Z", "level": level, "service": "checkout",
		"msg": "request served for ann@example.com", "method": "GET", "route": "/api/cart",
		"status": 200.0, "latency_ms": 12.0, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
	}
}

const path = "/var/log/containers/checkout-7d9f8b6c5-x2v4q_shop_app-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.log"

func route(e *event.Event, routes []*expression.Program) int {
	n := 0
	for _, r := range routes {
		if ok, _ := r.Bool(e); ok {
			n++
		}
	}
	return n
}

// BenchmarkDropDebugOneRoute: `drop when level == "debug"` plus one route;
// half the records are debug. No stage mutates, so records are reused.
func BenchmarkDropDebugOneRoute(b *testing.B) {
	chain, routes := build(b, `filters: [{type: drop, when: 'level == "debug"'}]`, `level in ["warn", "error"]`)
	evs := make([]*event.Event, 1024)
	for i := range evs {
		lvl := []string{"debug", "info", "warn", "error"}[i%4]
		evs[i] = &event.Event{Fields: record(lvl), Input: "app", Path: path, Time: time.Now()}
	}
	b.ReportAllocs()
	b.ResetTimer()
	routed := 0
	for i := 0; i < b.N; i++ {
		e := evs[i&1023]
		if chain.Apply(e) {
			routed += route(e, routes)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	if b.N > 4 && routed == 0 {
		b.Fatal("nothing routed")
	}
}

const fiveFilters = `
filters:
  - type: drop
    when: 'level == "debug"'
  - type: modify
    when: 'service == "checkout"'
    set:
      env: '"prod"'
      latency_s: 'latency_ms / 1000'
    rename: {msg: message}
    remove: [trace_id]
  - type: redact
    fields: [message]
    builtin: [credit_card, email, bearer_token]
  - type: kubernetes
  - type: throttle
    limit: 1000000000
    interval: 1s
    key: 'service'
`

var threeRoutes = []string{`level in ["warn", "error"]`, `meta.input == "app"`, `kubernetes?.namespace == "shop" && status >= 500`}

// BenchmarkFiveFiltersThreeRoutes: drop, modify, redact, kubernetes,
// throttle, then three routes. Every record is mutated, so each iteration
// starts from a fresh copy of the parsed map: subtract
// BenchmarkBaselineMapClone for the chain's own cost.
func BenchmarkFiveFiltersThreeRoutes(b *testing.B) {
	chain, routes := build(b, fiveFilters, threeRoutes...)
	tmpl := [4]map[string]any{record("debug"), record("info"), record("warn"), record("error")}
	e := &event.Event{}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		*e = event.Event{Fields: maps.Clone(tmpl[i&3]), Input: "app", Path: path}
		if chain.Apply(e) {
			route(e, routes)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkBaselineMapClone is the copy that BenchmarkFiveFiltersThreeRoutes
// makes per record (work the real pipeline's parser does instead).
func BenchmarkBaselineMapClone(b *testing.B) {
	tmpl := record("info")
	e := &event.Event{}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		*e = event.Event{Fields: maps.Clone(tmpl), Input: "app", Path: path}
	}
}
