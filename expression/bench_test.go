package expression

import (
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
)

func benchEvent() *event.Event {
	return &event.Event{
		Fields: map[string]any{
			"ts": "2024-05-01T12:00:00Z", "level": "info", "msg": "request served",
			"service": "checkout", "latency_ms": 12.0, "status": 200.0, "path": "/api/cart",
			"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
		},
		Input: "app", Path: "/var/log/app/a.log", Time: time.Now(),
	}
}

func benchBool(b *testing.B, src string) {
	p := MustCompile(src, Bool)
	e := benchEvent()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.Bool(e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBoolFieldEquals(b *testing.B) { benchBool(b, `level == "debug"`) }
func BenchmarkBoolMeta(b *testing.B)        { benchBool(b, `meta.input == "app"`) }
func BenchmarkBoolIn(b *testing.B)          { benchBool(b, `level in ["warn", "error"]`) }
func BenchmarkBoolNumCompare(b *testing.B)  { benchBool(b, `status >= 500`) }
func BenchmarkBoolHas(b *testing.B)         { benchBool(b, `has(trace_id)`) }
func BenchmarkBoolMatches(b *testing.B)     { benchBool(b, `msg matches "^request"`) }
func BenchmarkBoolLower(b *testing.B)       { benchBool(b, `lower(service) == "checkout"`) }
