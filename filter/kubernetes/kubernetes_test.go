package kubernetes

import (
	"bufio"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/filter/drop"
	"github.com/sidelog/sidelog/filter/internal/example"
	jsonparser "github.com/sidelog/sidelog/parser/json"
	"github.com/sidelog/sidelog/plugins"
)

func TestParsePaths(t *testing.T) {
	f, err := os.Open("testdata/paths.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		n++
		cols := strings.Split(line, " | ")
		got := Parse(cols[0])
		if len(cols) == 1 {
			if got != nil {
				t.Errorf("%s: got %+v, want no match", cols[0], got)
			}
			continue
		}
		v := func(s string) string {
			if s == "-" {
				return ""
			}
			return s
		}
		want := &Info{Namespace: v(cols[1]), Pod: v(cols[2]), PodUID: v(cols[3]), Container: v(cols[4]), ContainerID: v(cols[5])}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", cols[0], got, want)
		}
	}
	if n < 10 {
		t.Fatalf("only %d cases read", n)
	}
}

func TestExample(t *testing.T) {
	reg := example.Registry(map[string]plugins.Filter{"kubernetes": Plugin, "drop": drop.Plugin})
	cfg, err := example.ParseFile("example.yaml", reg)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := example.Build(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	e := &event.Event{Path: "/var/log/pods/shop_web-1_uid-1/app/0.log", Fields: map[string]any{"msg": "hi"}, Flags: event.RawJSON}
	if !chain.Apply(e) {
		t.Fatal("dropped")
	}
	want := map[string]any{"msg": "hi", "kubernetes": map[string]any{"namespace": "shop", "pod": "web-1", "pod_uid": "uid-1", "container": "app"}}
	if !reflect.DeepEqual(e.Fields, want) {
		t.Fatalf("got %v", e.Fields)
	}
	// A raw JSON line gets the object through the overlay: still written
	// from its raw bytes, with the object added.
	e.Raw = []byte(`{"msg":"hi"}`)
	if got := string(event.AppendJSON(nil, e)); got != `{"msg":"hi","kubernetes":{"container":"app","namespace":"shop","pod":"web-1","pod_uid":"uid-1"}}` {
		t.Fatalf("written as %s", got)
	}
	sys := &event.Event{Path: "/var/log/pods/kube-system_dns-1_uid-2/dns/0.log", Fields: map[string]any{}}
	if chain.Apply(sys) {
		t.Fatal("kube-system record not dropped")
	}
	other := &event.Event{Path: "/var/log/app.log", Fields: map[string]any{"a": 1.0}, Flags: event.RawJSON}
	if !chain.Apply(other) || other.Has(event.Modified) || len(other.Fields) != 1 {
		t.Fatalf("non-container record changed: %v", other.Fields)
	}
	if got := example.Count(chain[0].Filter, "unmatched"); got != 1 {
		t.Fatalf("unmatched = %d", got)
	}
}

func TestMergesExistingObjectAndDoesNotShare(t *testing.T) {
	k := New()
	path := "/var/log/pods/shop_web-1_uid-1/app/0.log"
	a := &event.Event{Path: path, Fields: map[string]any{"kubernetes": map[string]any{"node": "n1"}}}
	k.Apply(a)
	want := map[string]any{"node": "n1", "namespace": "shop", "pod": "web-1", "pod_uid": "uid-1", "container": "app"}
	if !reflect.DeepEqual(a.Fields["kubernetes"], want) {
		t.Fatalf("got %v", a.Fields["kubernetes"])
	}
	b := &event.Event{Path: path, Fields: map[string]any{}}
	c := &event.Event{Path: path, Fields: map[string]any{}}
	k.Apply(b)
	k.Apply(c)
	b.Fields["kubernetes"].(map[string]any)["pod"] = "changed"
	if c.Fields["kubernetes"].(map[string]any)["pod"] != "web-1" {
		t.Fatal("records share the kubernetes object")
	}
}

func TestConcurrentApply(t *testing.T) {
	k := New()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				e := &event.Event{Path: "/var/log/pods/ns_p_u/c/" + string(rune('0'+i%10)) + ".log", Fields: map[string]any{}}
				k.Apply(e)
				if e.Fields["kubernetes"].(map[string]any)["namespace"] != "ns" {
					t.Error("wrong namespace")
					return
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkApplyCached(b *testing.B) {
	k := New()
	e := &event.Event{Path: "/var/log/containers/checkout-7d9f8b6c5-x2v4q_shop_app-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.log"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		e.Fields = map[string]any{"msg": "x"}
		k.Apply(e)
	}
}

// The filter's key is selected from JSON lines (Keys): a line without it is
// known not to have it (no search of the line), and a line with it gets the
// object merged, written once.
func TestSelectedKeyFromParsedLines(t *testing.T) {
	k := New()
	keys, all := k.Keys()
	p := jsonparser.New()
	p.SelectKeys(keys, all)
	path := "/var/log/pods/shop_web-1_uid-1/app/0.log"
	plain := &event.Event{Path: path, Raw: []byte(`{"msg":"hi"}`)}
	p.Parse(plain)
	if !plain.KnownAbsent(Field) {
		t.Fatal("the parser did not select the filter's key: a line without it is not known absent")
	}
	k.Apply(plain)
	if got := string(event.AppendJSON(nil, plain)); got != `{"msg":"hi","kubernetes":{"container":"app","namespace":"shop","pod":"web-1","pod_uid":"uid-1"}}` {
		t.Fatalf("written as %s", got)
	}
	own := &event.Event{Path: path, Raw: []byte(`{"msg":"hi","kubernetes":{"node":"n1"}}`)}
	p.Parse(own)
	if own.KnownAbsent(Field) {
		t.Fatal("a line with the key is known absent")
	}
	k.Apply(own)
	if got := string(event.AppendJSON(nil, own)); got != `{"msg":"hi","kubernetes":{"container":"app","namespace":"shop","node":"n1","pod":"web-1","pod_uid":"uid-1"}}` {
		t.Fatalf("written as %s", got)
	}
}

// Records of two files in turn, and again, each get their own file's
// object (the last lookup is remembered, never mixed up).
func TestLookupAlternatingFiles(t *testing.T) {
	k := New()
	paths := map[string]string{
		"/var/log/pods/shop_web-1_uid-1/app/0.log": "shop",
		"/var/log/pods/bank_api-2_uid-2/app/0.log": "bank",
		"/var/log/app.log":                         "",
	}
	for round := 0; round < 3; round++ {
		for path, ns := range paths {
			for range 2 {
				e := &event.Event{Path: path, Fields: map[string]any{}}
				k.Apply(e)
				obj, _ := e.Fields["kubernetes"].(map[string]any)
				if got, _ := obj["namespace"].(string); got != ns {
					t.Fatalf("round %d, %s: namespace %q, want %q", round, path, got, ns)
				}
			}
		}
	}
}
