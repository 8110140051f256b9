package kubernetes

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/filter/kubernetes/kubetest"
	pjson "github.com/sidelog/sidelog/parser/json"
)

// applyRaw applies the filter to a raw JSON line (the overlay path, where
// the object is shared and written from its encoding) and returns the
// event and the kubernetes object as written.
func applyRaw(t *testing.T, k *Kubernetes, path string) (*event.Event, map[string]any) {
	t.Helper()
	p := pjson.New()
	p.SelectKeys([]string{"level"}, false)
	e := &event.Event{Raw: []byte(`{"level":"info","msg":"x"}`), Path: path}
	p.Parse(e)
	if !e.Has(event.RawJSON) {
		t.Fatal("not RawJSON")
	}
	k.Apply(e)
	var rec map[string]any
	if err := json.Unmarshal(event.AppendJSON(nil, e), &rec); err != nil {
		t.Fatal(err)
	}
	m, _ := rec[Field].(map[string]any)
	return e, m
}

// Records of one pod share one object, written from its encoding; a pod
// update or a namespace relabel shows in the next records, and a stage that
// changes one record does not change the others.
func TestSharedObjectFollowsChanges(t *testing.T) {
	srv, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.SetNamespace("shop", map[string]string{"tier": "gold"})
	pod := testPod("shop", "checkout", "node-a", "payments", 7)
	p := srv.AddPod(pod)
	k := startFilter(t, srv, APIConfig{MissWait: dur(2 * time.Second)}, []string{"*"}, nil)
	path := podPath(p, "app")

	e1, got := applyRaw(t, k, path)
	if label(got, "labels", "team") != "payments" || label(got, "namespace_labels", "tier") != "gold" || got["pod"] != p.Name {
		t.Fatalf("first record: %v", got)
	}
	e2, _ := applyRaw(t, k, path)
	a, _ := e1.Field(Field)
	b, _ := e2.Field(Field)
	if a.(map[string]any)["labels"] == nil {
		t.Fatal("no object")
	}
	// A later stage changes record 1 (nested: through Mutable).
	e1.Mutable()[Field].(map[string]any)["labels"].(map[string]any)["team"] = "changed"
	if label(b.(map[string]any), "labels", "team") != "payments" {
		t.Fatal("a change of one record reached another")
	}
	if _, got := applyRaw(t, k, path); label(got, "labels", "team") != "payments" {
		t.Fatalf("a change of one record reached the next: %v", got)
	}

	pod.Labels["team"] = "billing"
	srv.UpdatePod(pod)
	eventually(t, "pod relabel", func() bool {
		_, got := applyRaw(t, k, path)
		return label(got, "labels", "team") == "billing"
	})
	srv.SetNamespace("shop", map[string]string{"tier": "silver"})
	eventually(t, "namespace relabel", func() bool {
		_, got := applyRaw(t, k, path)
		return label(got, "namespace_labels", "tier") == "silver" && label(got, "labels", "team") == "billing"
	})
}

// Without `api`, the path's object is shared the same way.
func TestSharedObjectPathOnly(t *testing.T) {
	k := New()
	path := "/var/log/pods/shop_web-1_uid-1/app/0.log"
	_, got := applyRaw(t, k, path)
	if got["namespace"] != "shop" || got["pod"] != "web-1" || got["pod_uid"] != "uid-1" || got["container"] != "app" || len(got) != 4 {
		t.Fatalf("got %v", got)
	}
}
