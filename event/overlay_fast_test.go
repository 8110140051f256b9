package event

import (
	"bytes"
	"testing"
)

// The fast path for keys absent from Raw writes exactly what the member walk
// writes, and declines whenever it cannot prove the keys absent.
func TestAppendOverlayNewMatchesWalk(t *testing.T) {
	raws := []string{
		`{"a":1,"b":"x"}`,
		`  { "a" : 1 ,  "b":[1,{"c":2}] }  `,
		"{\t\"a\":1}\n",
		`{}`,
		`{ }`,
		`{"a":"latency_s","b":1}`,        // the key as a value: declines
		`{"latency_s":1}`,                // the key present: declines
		`{"a":"x\"latency_s\"","b":1}`,   // a backslash: declines
		`{"a\u0062":1}`,                  // an escaped key: declines
		`{"a":1,"latency_s_x":2,"b":3}`,  // a longer key: absent
		`{"a":1,"xlatency_s":2,"b":3}`,   // a longer key: absent
		`{"a":{"latency_s":1},"b":3}`,    // nested: declines (a walk writes the same)
		`{"a":1,"b":3,"latency_s"   :4}`, // present at the end
	}
	overs := [][]overField{
		{{key: "latency_s", val: 0.5}},
		{{key: "latency_s", val: 0.5}, {key: "gone", del: true}},
		{{key: "gone", del: true}},
		{{key: "x", val: "y"}, {key: "latency_s", val: int64(3)}},
		{{key: "", val: 1}},
		{{key: `q"k`, val: 1}},
	}
	for _, raw := range raws {
		for _, over := range overs {
			e := &Event{Raw: []byte(raw), Flags: RawJSON | RawChecked, over: over}
			fast, ok := appendOverlayNew([]byte("pre"), e.Raw, over, false)
			// The walk alone: over with the fast path out of the way.
			walk, wok := walkOverlay([]byte("pre"), e)
			if !wok {
				t.Fatalf("%s: the walk failed", raw)
			}
			if ok && string(fast) != string(walk) {
				t.Errorf("%s %v: fast %s, walk %s", raw, over, fast, walk)
			}
			got, _ := appendOverlay([]byte("pre"), e)
			if string(got) != string(walk) {
				t.Errorf("%s %v: appendOverlay %s, walk %s", raw, over, got, walk)
			}
			// As the parser marks a line without a backslash (RawPlain).
			if !bytes.Contains(e.Raw, []byte(`\`)) {
				e.Flags |= RawPlain
				if fast, ok := appendOverlayNew([]byte("pre"), e.Raw, over, true); ok && string(fast) != string(walk) {
					t.Errorf("%s %v plain: fast %s, walk %s", raw, over, fast, walk)
				}
				if got, _ := appendOverlay([]byte("pre"), e); string(got) != string(walk) {
					t.Errorf("%s %v plain: appendOverlay %s, walk %s", raw, over, got, walk)
				}
			}
		}
	}
	// The fast path is taken where it can be.
	e := &Event{Raw: []byte(raws[1]), over: overs[1]}
	if _, ok := appendOverlayNew(nil, e.Raw, e.over, false); !ok {
		t.Error("fast path declined a record without the key")
	}
	for _, raw := range []string{raws[5], raws[6], raws[7], raws[8]} {
		if _, ok := appendOverlayNew(nil, []byte(raw), overs[0], false); ok {
			t.Errorf("fast path taken for %s", raw)
		}
	}
}
