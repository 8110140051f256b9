package json

import (
	stdjson "encoding/json"
	"testing"

	"github.com/sidelog/sidelog/event"
)

// benchLines are 250-byte-ish application log lines (issue 10 shape).
var benchLines = func() [][]byte {
	out := make([][]byte, 64)
	for i := range out {
		out[i] = []byte(appLine)
	}
	return out
}()

func benchParser(b *testing.B, p *Parser, full bool) {
	b.SetBytes(int64(len(appLine)))
	b.ReportAllocs()
	var e event.Event
	for i := 0; b.Loop(); i++ {
		e = event.Event{Raw: benchLines[i&63]}
		p.Parse(&e)
		if full {
			e.Full()
		}
	}
	if e.Has(event.ParseFailed) {
		b.Fatal(e.Fields)
	}
}

func BenchmarkJSONFull(b *testing.B) { benchParser(b, New(), false) }

func BenchmarkJSONSelected2Keys(b *testing.B) {
	p := New()
	p.SelectKeys([]string{"level", "service"}, false)
	benchParser(b, p, false)
}

func BenchmarkJSONValidateOnly(b *testing.B) {
	p := New()
	p.SelectKeys(nil, false)
	benchParser(b, p, false)
}

func BenchmarkJSONSelectedThenFull(b *testing.B) {
	p := New()
	p.SelectKeys([]string{"level"}, false)
	benchParser(b, p, true)
}

func BenchmarkEncodingJSONMap(b *testing.B) {
	b.SetBytes(int64(len(appLine)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		var m map[string]any
		if err := stdjson.Unmarshal(benchLines[i&63], &m); err != nil {
			b.Fatal(err)
		}
	}
}
