package elasticsearch

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/output/sourceid"
	"github.com/sidelog/sidelog/plugins"
)

// The fast paths of Encode (appendTimestamp's own calendar arithmetic,
// appendStamped writing "@timestamp" in front instead of moving the
// document) against the straightforward code they replaced, kept here as
// the reference: the bytes must be the same for every record.

// TestAppendTimestampMatchesFormat compares appendTimestamp with
// t.UTC().AppendFormat(time.RFC3339Nano): random times from the year 0 to
// 10001 (every year's turn and end of February among them), fractions with any number of trailing zeros, times
// in other locations, and the years the layout writes with a sign or more
// digits.
func TestAppendTimestampMatchesFormat(t *testing.T) {
	check := func(tm time.Time) {
		t.Helper()
		got := string(appendTimestamp([]byte("x"), tm))
		want := "x" + tm.UTC().Format(time.RFC3339Nano)
		if got != want {
			t.Fatalf("%v (unix %d, ns %d): %s, want %s", tm, tm.Unix(), tm.Nanosecond(), got, want)
		}
	}
	r := rand.New(rand.NewPCG(22, 5))
	zones := []*time.Location{time.UTC, time.FixedZone("IST", 5*3600+1800), time.FixedZone("PST", -8*3600),
		time.FixedZone("odd", -(13*3600 + 59*60 + 59)), time.FixedZone("east", 14*3600), time.Local}
	first := time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)
	last := time.Date(10001, 12, 31, 0, 0, 0, 0, time.UTC)
	// The days around every year's turn and February's end, and a random
	// day every two weeks or so in between.
	var days []time.Time
	for y := first.Year(); y <= last.Year(); y++ {
		for _, d := range [][2]int{{1, 1}, {2, 28}, {2, 29}, {3, 1}, {12, 31}} {
			days = append(days, time.Date(y, time.Month(d[0]), d[1], 0, 0, 0, 0, time.UTC))
		}
	}
	for day := first; !day.After(last); day = day.AddDate(0, 0, 1+r.IntN(25)) {
		days = append(days, day)
	}
	for _, day := range days {
		ns := 0
		switch r.IntN(4) {
		case 0: // a whole second: no fraction
		case 1:
			ns = r.IntN(1e9)
		case 2: // trailing zeros: milli- or microseconds
			ns = r.IntN(1000) * 1e6
		default:
			ns = r.IntN(1e6) * 1e3
		}
		tm := day.Add(time.Duration(r.Int64N(86400))*time.Second + time.Duration(ns))
		check(tm.In(zones[r.IntN(len(zones))]))
	}
	base := time.Date(2026, 12, 3, 23, 59, 59, 0, time.UTC)
	for _, ns := range []int{0, 1, 9, 10, 100, 1000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000,
		120_000_000, 123_000_000, 123_400_000, 123_456_789, 999_999_999, 500_000_001} {
		for _, z := range zones {
			check(base.Add(time.Duration(ns)).In(z))
			check(base.Add(time.Duration(ns) + time.Second).In(z)) // over midnight, the year's end
		}
	}
	for _, tm := range []time.Time{
		{}, // year 1
		time.Date(-1, 12, 31, 23, 59, 59, 5, time.UTC),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(0, 2, 29, 23, 59, 59, 0, time.UTC), // year 0 is a leap year
		time.Date(0, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(999, 12, 31, 23, 59, 59, 999, time.UTC),
		time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1900, 2, 28, 12, 0, 0, 0, time.UTC),
		time.Date(2000, 2, 29, 12, 0, 0, 0, time.UTC),
		time.Date(2100, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(10000, 2, 29, 0, 0, 0, 0, time.UTC),
		time.Date(10000, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(123456, 7, 8, 9, 10, 11, 12, time.UTC),
		time.Date(-123456, 7, 8, 9, 10, 11, 12, time.UTC),
		time.Unix(1<<40, 1),
		time.Unix(-(1 << 40), 1),
		time.Unix(0, 0).In(time.FixedZone("x", 3600)),                    // 1970-01-01T00:00:00Z whatever the zone says
		time.Date(9999, 12, 31, 23, 0, 0, 0, time.FixedZone("y", -3600)), // 10000 in UTC
		time.Date(0, 1, 1, 0, 30, 0, 0, time.FixedZone("z", 3600)),       // year -1 in UTC
		time.Now(),
	} {
		check(tm)
	}
}

// encodeReference is Encode as it was before its fast paths.
func encodeReference(o *Output, dst []byte, e *event.Event) ([]byte, error) {
	start := len(dst)
	dst = append(dst, o.actionPrefix...)
	idx := len(dst)
	dst = o.index.Append(dst, e)
	if len(dst) == idx {
		return dst[:start], errEmptyIndex
	}
	sanitizeIndex(dst[idx:])
	if nonASCII(dst[idx:]) {
		if low := bytes.ToLower(dst[idx:]); !bytes.Equal(low, dst[idx:]) {
			dst = append(dst[:idx], low...)
		}
	}
	if err := checkIndexName(dst[idx:]); err != nil {
		return dst[:start], fmt.Errorf("%s: the index template %q rendered the index name %q for this record: %v", o.kind, o.cfg.indexTemplate(), dst[idx:], err)
	}
	idxEnd := len(dst)
	dst = append(dst, '"')
	var scratch [256]byte
	idDone := false
	if o.idKey != nil {
		if v := o.idKey.Append(scratch[:0], e); len(v) > 0 {
			dst = append(dst, `,"_id":`...)
			dst = event.AppendString(dst, v)
			idDone = true
		}
	}
	if o.stableID && !idDone {
		if e.ID != "" {
			dst = append(dst, `,"_id":`...)
			if len(e.ID) <= sourceid.MaxLen {
				dst = event.AppendString(dst, e.ID)
			} else {
				id, _ := o.idPrefix.Append(scratch[:0], e)
				dst = event.AppendString(dst, id)
			}
		} else if id, ok := o.idPrefix.FromPosition(e.Pos); ok {
			dst = append(dst, `,"_id":"`...)
			dst = append(dst, id[:]...)
			dst = append(dst, '"')
		}
	}
	if o.routing != nil {
		if v := o.routing.Append(scratch[:0], e); len(v) > 0 {
			dst = append(dst, `,"routing":`...)
			dst = event.AppendString(dst, v)
		}
	}
	dst = append(dst, o.actionSuffix...)
	doc := len(dst)
	dst = event.AppendJSON(dst, e)
	for i := doc; ; {
		j := bytes.IndexByte(dst[i:], '\n')
		if j < 0 {
			break
		}
		dst[i+j] = ' '
		i += j + 1
	}
	if o.ecs != nil {
		dst = o.ecs.apply(dst, doc, e, dst[idx:idxEnd])
	}
	if !hasTimestamp(e) {
		dst = spliceTimestampReference(dst, doc, e.Time)
	}
	return append(dst, '\n'), nil
}

func spliceTimestampReference(dst []byte, doc int, t time.Time) []byte {
	open := doc
	for open < len(dst) && (dst[open] == ' ' || dst[open] == '\t' || dst[open] == '\r') {
		open++
	}
	if open == len(dst) || dst[open] != '{' {
		return dst
	}
	var ts [64]byte
	ins := append(ts[:0], `"@timestamp":"`...)
	if t.IsZero() {
		t = time.Now()
	}
	ins = t.UTC().AppendFormat(ins, time.RFC3339Nano)
	ins = append(ins, '"')
	rest := open + 1
	for rest < len(dst) && (dst[rest] == ' ' || dst[rest] == '\t' || dst[rest] == '\r') {
		rest++
	}
	if rest < len(dst) && dst[rest] != '}' {
		ins = append(ins, ',')
	}
	n := len(ins)
	dst = append(dst, ins...)
	copy(dst[open+1+n:], dst[open+1:len(dst)-n])
	copy(dst[open+1:], ins)
	return dst
}

// TestEncodeMatchesReference encodes many records, of every shape the
// document can take (empty objects, whitespace before and inside the
// brace, newlines, not an object, an own @timestamp, an overlay, no raw
// JSON at all), through outputs with and without ECS, id_key and routing,
// and compares Encode's bytes and errors with encodeReference's.
func TestEncodeMatchesReference(t *testing.T) {
	kube, kubeEnc := daemonSetKube()
	outputs := map[string]*Output{
		"plain":   testOutput(t, func(c *Config) { c.Index = "app-{{ service }}" }, plugins.OutputEnv{}),
		"dated":   testOutput(t, func(c *Config) { c.Index = "app-{{ service }}-%Y.%m.%d"; c.Pipeline = "p" }, plugins.OutputEnv{}),
		"ecs":     testOutput(t, func(c *Config) { c.Index = "app-{{ service }}"; c.ECS = true }, plugins.OutputEnv{}),
		"id_key":  testOutput(t, func(c *Config) { c.Index = "app"; c.IDKey = "rid"; c.Routing = "{{ tenant }}" }, plugins.OutputEnv{}),
		"create":  testOutput(t, func(c *Config) { c.Index = "logs-{{ service }}-x"; c.Mode = "data_stream" }, plugins.OutputEnv{}),
		"no_ids":  testOutput(t, func(c *Config) { c.Index = "app-{{ service }}"; c.ID = "none" }, plugins.OutputEnv{}),
		"noindex": testOutput(t, func(c *Config) { c.Index = "{{ service }}" }, plugins.OutputEnv{}),
	}
	raws := []string{
		`{"service":"checkout","msg":"hi"}`,
		`{}`, `{ }`, `{` + "\n" + `}`, ` {"service":"a"}`, "\t{\"service\":\"a\"}", `{ "service":"a"}`,
		"{\n\"service\": \"a\",\n \"n\": [1,\n2]\n}", "{\r\n\"service\":\"a\"}", `{"@timestamp":"2020-01-01T00:00:00Z","service":"a"}`,
		`{"a":"@timestamp","service":"b"}`, `{"service":"Ünï","x":"\u00e9\"\\"}`, `[1,2]`, `"text"`, `42`, ``, ` `,
		`{"service":"x","rid":"id-1","tenant":"t1"}`, `{"service":"x","rid":"","tenant":""}`,
		`{"service":"x","kubernetes":{"pod_name":"p"},"stream":"stderr"}`,
	}
	r := rand.New(rand.NewPCG(22, 6))
	zones := []*time.Location{time.UTC, time.FixedZone("IST", 5*3600+1800), time.FixedZone("PST", -8*3600)}
	n := 0
	for name, o := range outputs {
		for i := range 3000 {
			raw := raws[i%len(raws)]
			var tm time.Time
			switch i % 5 {
			case 0:
				tm = time.Unix(r.Int64N(1<<35), 0).In(zones[i%3]) // whole seconds, some past 9999
			case 1:
				tm = time.Unix(r.Int64N(1<<33)-(1<<32), int64(r.IntN(1e9)))
			case 2:
				tm = time.Date(r.IntN(12000)-1000, time.Month(1+r.IntN(12)), 1+r.IntN(31), r.IntN(24), 0, 0, r.IntN(1000)*1e6, zones[i%3])
			case 3:
				tm = t0.Add(time.Duration(i) * time.Millisecond)
			} // else zero: the time of encoding
			// build makes the record; called twice, it makes the same one
			// (Encode may complete an event's fields on the way, which
			// must not leak into the reference run).
			build := func() *event.Event {
				var e *event.Event
				switch i / len(raws) % 4 {
				case 0: // the json parser's raw line, no overlay
					e = &event.Event{Raw: []byte(raw), Flags: event.RawJSON | event.RawChecked}
					e.AddField("service", "checkout")
					e.Partial = true
				case 1: // a DaemonSet record: stream and kubernetes in the overlay
					e = daemonSetEvent(i, kube, kubeEnc, raw)
				case 2: // fields only (not raw JSON)
					e = &event.Event{Raw: []byte(raw), Fields: map[string]any{"service": "svc", "msg": raw, "rid": fmt.Sprint(i), "n": i}}
					if i%3 == 0 {
						e.Fields["@timestamp"] = "own"
					}
				default: // a plain text line
					e = &event.Event{Raw: []byte(raw)}
				}
				if i%7 == 0 {
					e.ID = fmt.Sprintf("kafka-%d", i)
				}
				e.Pos = event.Position{FileID: event.FileID{Dev: 1, Ino: uint64(i % 5), Fingerprint: 9}, Offset: int64(i) * 100, Generation: uint32(i % 3)}
				e.Time = tm
				return e
			}
			e, e2 := build(), build()
			prefix := []byte("prev")
			got, gerr := o.Encode(prefix, e)
			want, werr := encodeReference(o, []byte("prev"), e2)
			if fmt.Sprint(gerr) != fmt.Sprint(werr) {
				t.Fatalf("%s %d %q: error %v, reference %v", name, i, raw, gerr, werr)
			}
			if e.Time.IsZero() {
				// both take time.Now(): only the timestamps may differ
				got, want = maskNow(got), maskNow(want)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s %d %q (time %v):\n got %q\nwant %q", name, i, raw, e.Time, got, want)
			}
			n++
		}
	}
	t.Logf("%d records compared", n)
}

// maskNow replaces the first "@timestamp":"…" value with a fixed one.
func maskNow(b []byte) []byte {
	key := []byte(`"@timestamp":"`)
	i := bytes.Index(b, key)
	if i < 0 {
		return b
	}
	j := bytes.IndexByte(b[i+len(key):], '"')
	return append(append(append([]byte{}, b[:i+len(key)]...), "NOW"...), b[i+len(key)+j:]...)
}

func BenchmarkTimestamp(b *testing.B) {
	ts := make([]time.Time, 1024)
	for i := range ts {
		ts[i] = t0.Add(time.Duration(i) * 250 * time.Microsecond)
	}
	var buf [64]byte
	b.Run("appendTimestamp", func(b *testing.B) {
		i := 0
		for b.Loop() {
			appendTimestamp(buf[:0], ts[i&1023])
			i++
		}
	})
	b.Run("AppendFormat", func(b *testing.B) {
		i := 0
		for b.Loop() {
			ts[i&1023].UTC().AppendFormat(buf[:0], time.RFC3339Nano)
			i++
		}
	})
}
