package kubernetes

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/filter/kubernetes/kubetest"
)

// testPod is a pod of a Deployment <app> on node, with a label team.
func testPod(ns, app, node, team string, n int) *corev1.Pod {
	hash := "7d9f8b6c5"
	rs := app + "-" + hash
	yes := true
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-x%04d", rs, n), Namespace: ns,
			UID:    types.UID(fmt.Sprintf("%s-%s-uid-%04d", ns, app, n)),
			Labels: map[string]string{"app": app, "team": team, "pod-template-hash": hash},
			Annotations: map[string]string{
				"app.kubernetes.io/version": "1.2", "vault.hashicorp.com/agent-inject-token": "s3cr3t",
				"kubectl.kubernetes.io/last-applied-configuration": `{"env":"PASSWORD=x"}`,
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs, UID: "rs", Controller: &yes}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: "Update"}},
		},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{
			{Name: "app", Image: "registry.example/" + app + ":1.2", Env: []corev1.EnvVar{{Name: "A", Value: "b"}}},
			{Name: "proxy", Image: "envoy:1.30"},
		}},
		Status: corev1.PodStatus{PodIP: fmt.Sprintf("10.1.0.%d", n%250+1)},
	}
}

func podPath(p *corev1.Pod, container string) string {
	return fmt.Sprintf("/var/log/pods/%s_%s_%s/%s/0.log", p.Namespace, p.Name, p.UID, container)
}

// startFilter builds the filter against srv and runs it until the test ends.
func startFilter(t *testing.T, srv *kubetest.Server, api APIConfig, labels, annotations []string) *Kubernetes {
	t.Helper()
	kc, err := srv.Kubeconfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	api.Kubeconfig = kc
	if api.NodeName == "" {
		api.NodeName = "node-a"
	}
	cfg := Config{API: &api, Labels: labels, Annotations: annotations}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	k, err := NewWith(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { k.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return k
}

func apply(k *Kubernetes, path string) map[string]any {
	e := &event.Event{Path: path, Fields: map[string]any{}}
	k.Apply(e)
	m, _ := e.Fields[Field].(map[string]any)
	return m
}

// eventually polls cond (the informer's state changes asynchronously; there
// is no signal to wait on from outside) until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func label(m map[string]any, group, key string) any {
	g, _ := m[group].(map[string]any)
	return g[key]
}

func TestAPIMetadata(t *testing.T) {
	srv, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.SetNamespace("shop", map[string]string{"env": "prod", "db-password": "x"})
	mine := srv.AddPod(testPod("shop", "checkout", "node-a", "payments", 1))
	other := srv.AddPod(testPod("shop", "search", "node-b", "search", 2))
	k := startFilter(t, srv, APIConfig{MissWait: 2 * time.Second}, []string{"*"}, []string{"app.kubernetes.io/*", "vault.*"})

	got := apply(k, podPath(mine, "app"))
	want := map[string]any{
		"namespace": "shop", "pod": mine.Name, "pod_uid": string(mine.UID), "container": "app",
		"labels":           map[string]any{"app": "checkout", "team": "payments", "pod-template-hash": "7d9f8b6c5"},
		"annotations":      map[string]any{"app.kubernetes.io/version": "1.2"},
		"namespace_labels": map[string]any{"env": "prod"},
		"node":             "node-a", "pod_ip": "10.1.0.2", "image": "registry.example/checkout:1.2",
		"owner": map[string]any{"kind": "Deployment", "name": "checkout"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("record:\n got %v\nwant %v", got, want)
	}
	if img := apply(k, podPath(mine, "proxy"))["image"]; img != "envoy:1.30" {
		t.Errorf("proxy image %v", img)
	}
	// The field selector keeps the other node's pod out of the cache: its
	// lines get the path fields only, after at most one direct GET (which
	// finds it, but on another node the UID join still holds).
	if n := k.api.podCount(); n != 1 {
		t.Errorf("cache holds %d pods, want this node's 1", n)
	}
	// The transform kept nothing else.
	m := k.api.lookup(&Info{PodUID: string(mine.UID)})
	if m == nil || m.labels["pod-template-hash"] == nil {
		t.Fatalf("meta %+v", m)
	}
	st := srv.Stats()
	if os.Getenv("KUBE_FEATURE_WatchListClient") == "false" {
		if st.Lists < 2 || st.WatchLists != 0 {
			t.Errorf("stats %+v: with WatchListClient off, pods and namespaces are listed plainly", st)
		}
	} else if st.WatchLists < 2 || st.Lists != 0 {
		t.Errorf("stats %+v: pods and namespaces were not listed with streaming lists", st)
	}
	_ = other
}

// The same with client-go's plain list + watch (WatchListClient off, as
// against an API server without streaming lists), in a child process: the
// feature gate is read from the environment once per process.
func TestAPIMetadataPlainList(t *testing.T) {
	if os.Getenv("KUBE_FEATURE_WatchListClient") == "false" {
		t.Skip("already the child")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAPIMetadata$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "KUBE_FEATURE_WatchListClient=false")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestAPIMetadata") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// A pod created after the agent started: its first record is right (the
// informer's event or one direct GET within miss_wait).
func TestAPIPodCreatedAfterStart(t *testing.T) {
	srv, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.SetNamespace("shop", nil)
	k := startFilter(t, srv, APIConfig{MissWait: 2 * time.Second}, []string{"*"}, nil)
	eventually(t, "first list", func() bool { return isClosed(k.api.synced) })
	p := srv.AddPod(testPod("shop", "late", "node-a", "payments", 3))
	got := apply(k, podPath(p, "app")) // no wait before: the first line
	if label(got, "labels", "team") != "payments" {
		t.Fatalf("first record of a new pod: %v", got)
	}
	if c := k.api.missing.Load(); c != 0 {
		t.Errorf("metadata_missing %d", c)
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// A deleted pod keeps its metadata for deleted_grace while its files are
// still read; then it is forgotten.
func TestAPIDeletedPodGrace(t *testing.T) {
	srv, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	p := srv.AddPod(testPod("shop", "gone", "node-a", "payments", 4))
	k := startFilter(t, srv, APIConfig{MissWait: 2 * time.Second, DeletedGrace: time.Hour}, []string{"*"}, nil)
	eventually(t, "pod listed", func() bool { return k.api.podCount() == 1 })
	srv.DeletePod("shop", p.Name)
	eventually(t, "delete seen", func() bool {
		m := k.api.lookup(&Info{PodUID: string(p.UID)})
		return m != nil && !m.deleted.IsZero()
	})
	if got := apply(k, podPath(p, "app")); label(got, "labels", "team") != "payments" {
		t.Fatalf("record of a deleted pod within the grace period: %v", got)
	}
	k.api.sweep(time.Now().Add(2 * time.Hour))
	if m := k.api.lookup(&Info{PodUID: string(p.UID)}); m != nil {
		t.Fatal("deleted pod kept past its grace period")
	}
}

// A namespace relabelled mid-run: the next records carry the new labels.
func TestAPINamespaceRelabelled(t *testing.T) {
	srv, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.SetNamespace("shop", map[string]string{"tier": "gold"})
	p := srv.AddPod(testPod("shop", "checkout", "node-a", "payments", 5))
	k := startFilter(t, srv, APIConfig{MissWait: 2 * time.Second}, []string{"*"}, nil)
	if got := apply(k, podPath(p, "app")); label(got, "namespace_labels", "tier") != "gold" {
		t.Fatalf("before: %v", got)
	}
	srv.SetNamespace("shop", map[string]string{"tier": "silver"})
	eventually(t, "relabel", func() bool { return label(apply(k, podPath(p, "app")), "namespace_labels", "tier") == "silver" })
}

// The API server is down at start-up: records go on with the path fields
// after at most one miss_wait in all (not one per pod), and get the
// metadata once it is up.
func TestAPIDownAtStart(t *testing.T) {
	srv, err := kubetest.NewDown()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	p := srv.AddPod(testPod("shop", "checkout", "node-a", "payments", 6))
	q := srv.AddPod(testPod("shop", "cart", "node-a", "payments", 7))
	wait := 300 * time.Millisecond
	k := startFilter(t, srv, APIConfig{MissWait: wait}, []string{"*"}, nil)
	t0 := time.Now()
	got := apply(k, podPath(p, "app"))
	apply(k, podPath(q, "app"))
	if _, ok := got["labels"]; ok || got["pod"] != p.Name {
		t.Fatalf("with the API down: %v", got)
	}
	if el := time.Since(t0); el > 5*wait {
		t.Errorf("two new pods with the API down took %v (miss_wait %v)", el, wait)
	}
	if k.api.missing.Load() != 2 {
		t.Errorf("metadata_missing %d, want 2", k.api.missing.Load())
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "metadata once the API is up", func() bool { return label(apply(k, podPath(q, "app")), "labels", "team") == "payments" })
}

// 410 Gone after the history is compacted and the watch dropped: the client
// lists again and sees changes made meanwhile; the cache keeps serving
// during the outage.
func TestAPIGoneForcesRelist(t *testing.T) {
	srv, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.BookmarkEvery = time.Hour // no bookmark moves the client past the compaction
	p := srv.AddPod(testPod("shop", "checkout", "node-a", "payments", 8))
	k := startFilter(t, srv, APIConfig{MissWait: 2 * time.Second}, []string{"*"}, nil)
	eventually(t, "listed", func() bool { return k.api.podCount() == 1 })
	// An event on the open watch (client-go lists again after a watch that
	// ended within a second without events, which is not what is tested).
	r := srv.AddPod(testPod("shop", "cart", "node-a", "payments", 11))
	eventually(t, "watch event", func() bool { return k.api.lookup(&Info{PodUID: string(r.UID)}) != nil })
	before := srv.Stats()
	srv.Stop() // an outage: the cache keeps serving
	if got := apply(k, podPath(p, "app")); label(got, "labels", "team") != "payments" {
		t.Fatalf("during the outage: %v", got)
	}
	q := srv.AddPod(testPod("shop", "late", "node-a", "search", 9))
	srv.Compact()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "relist after 410", func() bool { return k.api.lookup(&Info{PodUID: string(q.UID)}) != nil })
	after := srv.Stats()
	if after.Gone == before.Gone {
		t.Errorf("no 410 answered: %+v -> %+v", before, after)
	}
	if after.Lists+after.WatchLists <= before.Lists+before.WatchLists {
		t.Errorf("no relist: %+v -> %+v", before, after)
	}
}

// A dropped watch resumes from its resourceVersion without a relist.
func TestAPIDroppedWatchResumes(t *testing.T) {
	srv, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	k := startFilter(t, srv, APIConfig{MissWait: 2 * time.Second}, []string{"*"}, nil)
	eventually(t, "listed", func() bool { return isClosed(k.api.synced) })
	// An event on each open watch (client-go lists again after a watch that
	// ended within a second without events).
	r := srv.AddPod(testPod("shop", "cart", "node-a", "payments", 11))
	srv.SetNamespace("shop", nil)
	eventually(t, "watch events", func() bool {
		return k.api.lookup(&Info{PodUID: string(r.UID)}) != nil && k.api.namespaceLabels("shop") == nil && k.api.hasNamespace("shop")
	})
	before := srv.Stats()
	srv.DropWatches()
	eventually(t, "watch dropped", func() bool { return srv.Stats().Dropped >= 2 })
	p := srv.AddPod(testPod("shop", "after-drop", "node-a", "payments", 10))
	eventually(t, "pod seen after the drop", func() bool { return k.api.lookup(&Info{PodUID: string(p.UID)}) != nil })
	after := srv.Stats()
	if after.Watches <= before.Watches {
		t.Errorf("no resumed watch: %+v -> %+v", before, after)
	}
	if after.Lists+after.WatchLists != before.Lists+before.WatchLists {
		t.Errorf("a dropped watch caused a relist: %+v -> %+v", before, after)
	}
	if k.api.gets.Load() != 0 {
		t.Errorf("direct GETs %d: the watch should have brought the pod", k.api.gets.Load())
	}
}

// BenchmarkCache110Pods measures what the cache holds for a full node (110
// pods, the kubelet's default maximum, each with 10 labels, 8 annotations,
// managed fields and 3 containers): the Go heap retained after both
// informers have listed, reported as heap-B/node.
func BenchmarkCache110Pods(b *testing.B) {
	srv, err := kubetest.Start()
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	for i := 0; i < 110; i++ {
		p := testPod(fmt.Sprintf("ns%d", i%12), fmt.Sprintf("app%d", i), "node-a", "payments", i)
		for j := 0; j < 7; j++ {
			p.Labels[fmt.Sprintf("example.com/label-%d", j)] = fmt.Sprintf("value-%d-%d", i, j)
			p.Annotations[fmt.Sprintf("example.com/annotation-%d", j)] = strings.Repeat("x", 200)
		}
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "init", Image: "busybox:1.36"})
		srv.AddPod(p)
	}
	for i := 0; i < 12; i++ {
		srv.SetNamespace(fmt.Sprintf("ns%d", i), map[string]string{"team": "t", "env": "prod"})
	}
	kc, err := srv.Kubeconfig(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	var total uint64
	for n := 0; n < b.N; n++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		k, err := NewWith(Config{API: &APIConfig{Kubeconfig: kc, NodeName: "node-a", MissWait: time.Second}, Labels: []string{"*"}, Annotations: []string{"app.kubernetes.io/*"}}, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { k.Run(ctx); close(done) }()
		<-k.api.synced
		if k.api.podCount() != 110 {
			b.Fatalf("%d pods", k.api.podCount())
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		total += after.HeapAlloc - before.HeapAlloc
		runtime.KeepAlive(k)
		cancel()
		<-done
	}
	b.ReportMetric(float64(total)/float64(b.N), "heap-B/node")
}
