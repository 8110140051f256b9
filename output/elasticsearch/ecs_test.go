package elasticsearch

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/plugins"
)

func ecsOutput(t *testing.T, mod func(c *Config)) *Output {
	return testOutput(t, func(c *Config) {
		c.ECS = true
		c.Index = "app"
		if mod != nil {
			mod(c)
		}
	}, plugins.OutputEnv{Version: "v1.2.3"})
}

// get returns the value at a dotted path of a decoded document.
func get(doc map[string]any, path string) any {
	var v any = doc
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func encodeDoc(t *testing.T, o *Output, e *event.Event) (map[string]any, string) {
	t.Helper()
	rec, err := o.Encode(nil, e)
	if err != nil {
		t.Fatal(err)
	}
	_, doc, line := split(t, rec)
	return doc, line
}

func TestECSAddsAgentHostLog(t *testing.T) {
	o := ecsOutput(t, nil)
	e := rawEvent(`{"msg":"hi","n":12345678901234567890}`, map[string]any{"msg": "hi"}, 4096)
	e.Path = "/var/log/app/app.log"
	doc, line := encodeDoc(t, o, e)
	want := map[string]any{
		"agent.type": "sidelog", "agent.version": "v1.2.3", "agent.id": "instance-1",
		"host.name": "node-a", "log.file.path": "/var/log/app/app.log", "log.offset": float64(4096),
		"msg": "hi",
	}
	for path, w := range want {
		if got := get(doc, path); got != w {
			t.Errorf("%s = %v, want %v\n%s", path, got, w, line)
		}
	}
	// The record's bytes are kept (a number beyond float64 intact), the
	// ECS members spliced in front, @timestamp first.
	if !strings.HasPrefix(line, `{"@timestamp":"2024-02-29T23:04:05.123456789Z","agent":{"type":"sidelog","version":"v1.2.3","id":"instance-1"},"host":{"name":"node-a"},"log":{"file":{"path":"/var/log/app/app.log"},"offset":4096},`) ||
		!strings.HasSuffix(line, `"msg":"hi","n":12345678901234567890}`) {
		t.Errorf("document %s", line)
	}
	if _, ok := doc["data_stream"]; ok {
		t.Errorf("data_stream in bulk mode: %s", line)
	}
}

func TestECSOffWritesNone(t *testing.T) {
	o := testOutput(t, func(c *Config) { c.Index = "app" }, plugins.OutputEnv{Version: "v1"})
	e := rawEvent(`{"msg":"hi"}`, map[string]any{"msg": "hi"}, 10)
	e.Path = "/x.log"
	doc, line := encodeDoc(t, o, e)
	for _, k := range []string{"agent", "host", "log"} {
		if _, ok := doc[k]; ok {
			t.Errorf("%s written without ecs: %s", k, line)
		}
	}
}

func TestECSDataStream(t *testing.T) {
	o := ecsOutput(t, func(c *Config) { c.Mode = "data_stream"; c.Index = "logs-{{ service }}-prod" })
	e := rawEvent(`{"service":"checkout"}`, map[string]any{"service": "checkout"}, 10)
	doc, line := encodeDoc(t, o, e)
	for path, w := range map[string]string{"data_stream.type": "logs", "data_stream.dataset": "checkout", "data_stream.namespace": "prod"} {
		if got := get(doc, path); got != w {
			t.Errorf("%s = %v, want %s\n%s", path, got, w, line)
		}
	}
	// The record's own data_stream must not contradict the name (the
	// engine maps them constant_keyword): ours win, its other members stay.
	e = rawEvent(`{"service":"checkout","data_stream":{"dataset":"other","extra":1}}`, map[string]any{"service": "checkout"}, 20)
	doc, line = encodeDoc(t, o, e)
	if get(doc, "data_stream.dataset") != "checkout" || get(doc, "data_stream.extra") != float64(1) || get(doc, "data_stream.type") != "logs" {
		t.Errorf("data_stream of a record that has one: %s", line)
	}
	// A name that is not type-dataset-namespace: no data_stream fields.
	o = ecsOutput(t, func(c *Config) { c.Mode = "data_stream"; c.Index = "sidelog-app" })
	doc, line = encodeDoc(t, o, rawEvent(`{}`, map[string]any{}, 10))
	if _, ok := doc["data_stream"]; ok {
		t.Errorf("data_stream for %q: %s", "sidelog-app", line)
	}
}

// The record's own fields win: an object gets only what it lacks, a
// string stays (and gets none of ours), numbers are kept exactly.
func TestECSRecordFieldsWin(t *testing.T) {
	o := ecsOutput(t, nil)
	e := rawEvent(`{"host":"web-1","log":{"level":"info","offset":7},"agent":{"name":"edge"},"n":12345678901234567890}`, nil, 4096)
	e.Path = "/a.log"
	doc, line := encodeDoc(t, o, e)
	checks := map[string]any{
		"host": "web-1", "log.level": "info", "log.offset": float64(7), "log.file.path": "/a.log",
		"agent.name": "edge", "agent.type": "sidelog", "agent.version": "v1.2.3",
	}
	for path, w := range checks {
		if got := get(doc, path); got != w {
			t.Errorf("%s = %v, want %v\n%s", path, got, w, line)
		}
	}
	if !strings.Contains(line, `"n":12345678901234567890`) {
		t.Errorf("number changed: %s", line)
	}
	var anyDoc any
	if json.Unmarshal([]byte(line), &anyDoc) != nil || strings.Count(line, `"host"`) != 1 {
		t.Errorf("host written twice or invalid JSON: %s", line)
	}
}

// The kubernetes filter's object, rewritten into the form of Elastic's
// Kubernetes integration; routes never see it (Encode does not change the
// event).
func TestECSKubernetes(t *testing.T) {
	o := ecsOutput(t, nil)
	k8s := map[string]any{
		"namespace": "shop", "pod": "checkout-5c8f7d9b4-p1", "pod_uid": "uid-1", "pod_ip": "10.0.0.1",
		"node": "node-a", "container": "app", "container_id": "abc123", "image": "shop/checkout:1",
		"labels":      map[string]any{"app": "checkout", "app.kubernetes.io/name": "checkout"},
		"annotations": map[string]any{"sidelog.io/parser": "json"},
		"owner":       map[string]any{"kind": "ReplicaSet", "name": "checkout-5c8f7d9b4"},
	}
	e := &event.Event{Fields: map[string]any{"msg": "hi", "kubernetes": k8s}, Time: t0,
		Pos: event.Position{FileID: event.FileID{Ino: 42}, Offset: 10}}
	doc, line := encodeDoc(t, o, e)
	want := map[string]any{
		"kubernetes.pod.name": "checkout-5c8f7d9b4-p1", "kubernetes.pod.uid": "uid-1", "kubernetes.pod.ip": "10.0.0.1",
		"kubernetes.namespace": "shop", "kubernetes.node.name": "node-a", "kubernetes.container.name": "app",
		"kubernetes.replicaset.name": "checkout-5c8f7d9b4",
		"container.id":               "abc123", "container.image.name": "shop/checkout:1",
		"agent.type": "sidelog", "msg": "hi",
	}
	for path, w := range want {
		if got := get(doc, path); got != w {
			t.Errorf("%s = %v, want %v\n%s", path, got, w, line)
		}
	}
	labels, _ := get(doc, "kubernetes.labels").(map[string]any)
	if labels["app"] != "checkout" || labels["app_kubernetes_io/name"] != "checkout" || len(labels) != 2 {
		t.Errorf("labels not de-dotted: %v", labels)
	}
	if get(doc, "kubernetes.annotations.sidelog_io/parser") != "json" {
		t.Errorf("annotations not de-dotted: %s", line)
	}
	for _, gone := range []string{"kubernetes.pod_uid", "kubernetes.owner", "kubernetes.image", "kubernetes.container_id"} {
		if get(doc, gone) != nil {
			t.Errorf("%s still written: %s", gone, line)
		}
	}
	if p, _ := k8s["pod"].(string); p != "checkout-5c8f7d9b4-p1" {
		t.Errorf("the event's kubernetes object was changed: %v", k8s)
	}
}

func TestECSKubernetesOwnerKinds(t *testing.T) {
	for kind, key := range map[string]string{"StatefulSet": "statefulset", "DaemonSet": "daemonset", "Job": "job", "Deployment": "deployment", "CronJob": "cronjob"} {
		out, _ := ecsKubernetes(map[string]any{"owner": map[string]any{"kind": kind, "name": "x"}})
		if m, _ := out[key].(map[string]any); m["name"] != "x" {
			t.Errorf("%s: %v", kind, out)
		}
	}
	out, c := ecsKubernetes(map[string]any{"owner": map[string]any{"kind": "Node", "name": "n"}, "extra": 1})
	if out["owner"] == nil || out["extra"] != 1 || c != nil {
		t.Errorf("unknown owner kind or extra key: %v %v", out, c)
	}
}

func TestECSNotAnObject(t *testing.T) {
	o := ecsOutput(t, nil)
	e := &event.Event{Raw: []byte(`[1,2]`), Fields: nil, Time: t0, Flags: event.RawJSON}
	rec, err := o.Encode(nil, e)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(rec), "\n[1,2]\n") {
		t.Errorf("a non-object document changed: %q", rec)
	}
}

func BenchmarkEncodeECS(b *testing.B) {
	for _, k8s := range []bool{false, true} {
		name := "plain"
		if k8s {
			name = "kubernetes"
		}
		b.Run(name, func(b *testing.B) {
			o := testOutput(b, func(c *Config) { c.ECS = true; c.Index = "app" }, plugins.OutputEnv{Version: "v1"})
			e := rawEvent(`{"level":"info","msg":"order 1234 created","service":"checkout","user":{"id":42}}`, nil, 4096)
			e.Path = "/var/log/pods/shop_checkout_uid/app/0.log"
			if k8s {
				e = &event.Event{Fields: map[string]any{"level": "info", "msg": "order 1234 created",
					"kubernetes": map[string]any{"namespace": "shop", "pod": "checkout-1", "container": "app",
						"labels": map[string]any{"app": "checkout", "team": "payments"}}}, Time: t0, Pos: e.Pos, Path: e.Path}
			}
			var dst []byte
			b.ReportAllocs()
			for b.Loop() {
				dst, _ = o.Encode(dst[:0], e)
			}
		})
	}
}
