package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sidelog/sidelog/filter/kubernetes/kubetest"
)

// k8sPod is a pod of the Deployment app (team team) on node.
func k8sPod(app, team, node string, n int, annotations map[string]string) *corev1.Pod {
	yes := true
	rs := app + "-5c8f7d9b4"
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-p%d", rs, n), Namespace: "shop", UID: types.UID(fmt.Sprintf("uid-%s-%d", app, n)),
			Labels:          map[string]string{"app": app, "team": team, "pod-template-hash": "5c8f7d9b4"},
			Annotations:     annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs, UID: "rs", Controller: &yes}},
		},
		Spec:   corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "shop/" + app + ":1"}}},
		Status: corev1.PodStatus{PodIP: "10.0.0.1"},
	}
}

// criLine is one containerd log line of a pod.
func criLine(t *testing.T, root string, p *corev1.Pod, text string) {
	t.Helper()
	path := filepath.Join(root, fmt.Sprintf("%s_%s_%s", p.Namespace, p.Name, p.UID), "app", "0.log")
	appendLine(t, path, time.Now().UTC().Format(time.RFC3339Nano)+" stdout F "+text)
}

func readRecords(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, _ := os.ReadFile(path)
	var out []map[string]any
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%s: %q: %v", path, l, err)
		}
		out = append(out, m)
	}
	return out
}

func podOf(r map[string]any) string {
	k, _ := r["kubernetes"].(map[string]any)
	s, _ := k["pod"].(string)
	return s
}

// startAgent runs the agent on cfg until the test ends; it returns the API
// address.
func startAgent(t *testing.T, dir, cfg string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfgPath := filepath.Join(dir, "sidelog.yaml")
	writeFile(t, cfgPath, strings.ReplaceAll(cfg, "API_ADDRESS", addr))
	ctx, cancel := context.WithCancel(context.Background())
	cmd := sidelog(ctx, "run", "-c", cfgPath)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if testing.Verbose() {
				t.Log(sc.Text())
			}
		}
		close(logs)
	}()
	t.Cleanup(func() { cancel(); <-logs; cmd.Wait() })
	return addr
}

func metric(t *testing.T, addr, name string) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(string(b))
	if m == nil {
		return ""
	}
	return m[1]
}

const k8sConfig = `data_dir: DIR/data
api: {address: API_ADDRESS}
parsers:
  - name: verbs
    type: regex
    regex: '^(?P<verb>[A-Z]+) (?P<route>\S+)$'
inputs:
  - {name: pods, type: tail, paths: ["DIR/pods/*/*/*.log"], parser: cri, inner_parser: json, poll_interval: 50ms}
filters:
  - type: kubernetes
    api: {kubeconfig: KUBECONFIG, node_name: node-a, miss_wait: MISS_WAIT}
    labels: ["*"]
outputs:
  - {name: payments, type: file, path: DIR/payments.ndjson, route: 'kubernetes?.labels?.team == "payments"', batch: {timeout: 10ms}}
  - {name: all, type: file, path: DIR/all.ndjson, batch: {timeout: 10ms}}
`

// The DaemonSet's acceptance: pods of two teams, one excluded by
// annotation, one created after the agent started; a route on a label;
// labels and owner on records; a parser switched by annotation at run
// time.
func TestKubernetesDaemonSet(t *testing.T) {
	srv, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dir := t.TempDir()
	kc, err := srv.Kubeconfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetNamespace("shop", map[string]string{"env": "prod"})
	pay := srv.AddPod(k8sPod("checkout", "payments", "node-a", 1, nil))
	search := srv.AddPod(k8sPod("search", "search", "node-a", 2, nil))
	muted := srv.AddPod(k8sPod("ledger", "payments", "node-a", 3, map[string]string{"sidelog.io/exclude": "true"}))
	srv.AddPod(k8sPod("elsewhere", "payments", "node-b", 4, nil)) // another node's pod
	root := filepath.Join(dir, "pods")
	for i := 0; i < 5; i++ {
		criLine(t, root, muted, fmt.Sprintf(`{"n":%d,"who":"muted"}`, i))
		criLine(t, root, pay, fmt.Sprintf(`{"n":%d,"who":"pay"}`, i))
		criLine(t, root, search, fmt.Sprintf(`{"n":%d,"who":"search"}`, i))
	}
	cfg := strings.NewReplacer("DIR", dir, "KUBECONFIG", kc, "MISS_WAIT", "2s").Replace(k8sConfig)
	addr := startAgent(t, dir, cfg)
	payments, all := filepath.Join(dir, "payments.ndjson"), filepath.Join(dir, "all.ndjson")
	waitFor(t, "first lines", func() bool { return len(readRecords(t, all)) >= 10 })

	// A pod created after the agent started: its first line is routed by
	// its label.
	late := srv.AddPod(k8sPod("refunds", "payments", "node-a", 5, nil))
	criLine(t, root, late, `{"n":0,"who":"late"}`)
	waitFor(t, "the new pod's first line", fileHas(payments, `"who":"late"`))

	// sidelog.io/parser switches the running pod's parsing: lines that
	// were parse errors under json become {verb, route}.
	criLine(t, root, pay, `GET /before`)
	waitFor(t, "unparsed line", fileHas(payments, `/before`))
	annotated := pay.DeepCopy()
	annotated.Annotations = map[string]string{"sidelog.io/parser": "verbs"}
	srv.UpdatePod(annotated)
	for i := 0; ; i++ {
		criLine(t, root, pay, fmt.Sprintf("GET /after-%d", i))
		waitFor(t, "line", fileHas(payments, fmt.Sprintf("/after-%d", i)))
		if strings.Contains(string(mustReadFile(t, payments)), fmt.Sprintf(`"route":"/after-%d"`, i)) {
			break
		}
		if i > 200 {
			t.Fatal("the parser annotation never took effect")
		}
	}
	criLine(t, root, pay, "POST /final")
	waitFor(t, "parsed line", fileHas(payments, `"route":"/final"`))

	// The excluded pod's 5 lines were read and dropped by the kubernetes
	// filter (its drop counter), never delivered.
	waitFor(t, "excluded lines counted", func() bool {
		return metric(t, addr, `sidelog_filter_dropped_total{filter="filters[0].kubernetes"}`) == "5"
	})
	for _, r := range readRecords(t, all) {
		if podOf(r) == muted.Name {
			t.Fatalf("an excluded pod's line arrived: %v", r)
		}
	}
	// Exactly the payments pods' lines on the payments route.
	got := map[string]int{}
	for _, r := range readRecords(t, payments) {
		got[podOf(r)]++
		k := r["kubernetes"].(map[string]any)
		owner, _ := k["owner"].(map[string]any)
		labels, _ := k["labels"].(map[string]any)
		if labels["team"] != "payments" || owner["kind"] != "Deployment" || k["namespace_labels"] == nil || k["image"] == nil {
			t.Fatalf("payments record without its metadata: %v", r)
		}
		if podOf(r) == pay.Name && owner["name"] != "checkout" {
			t.Fatalf("owner %v", owner)
		}
	}
	if got[pay.Name] < 8 || got[late.Name] != 1 || len(got) != 2 {
		t.Fatalf("payments output per pod: %v", got)
	}
	searchN := 0
	for _, r := range readRecords(t, all) {
		if podOf(r) == search.Name {
			searchN++
		}
	}
	if searchN != 5 {
		t.Fatalf("search lines in all: %d", searchN)
	}
}

func mustReadFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The API server is unreachable for the whole run: every line is still
// delivered, with the path fields, and counted as missing metadata.
func TestKubernetesAPIUnreachable(t *testing.T) {
	srv, err := kubetest.NewDown() // never started
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kc, err := srv.Kubeconfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "pods")
	var pods []*corev1.Pod
	for i := 0; i < 4; i++ {
		pods = append(pods, k8sPod(fmt.Sprintf("app%d", i), "payments", "node-a", i, nil))
	}
	for n := 0; n < 10; n++ {
		for _, p := range pods {
			criLine(t, root, p, fmt.Sprintf(`{"n":%d}`, n))
		}
	}
	cfg := strings.NewReplacer("DIR", dir, "KUBECONFIG", kc, "MISS_WAIT", "500ms").Replace(k8sConfig)
	startAgent(t, dir, cfg)
	all := filepath.Join(dir, "all.ndjson")
	waitFor(t, "every line", func() bool { return len(readRecords(t, all)) == 40 })
	for _, r := range readRecords(t, all) {
		k := r["kubernetes"].(map[string]any)
		if k["namespace"] != "shop" || k["pod_uid"] == nil || k["container"] != "app" || k["labels"] != nil {
			t.Fatalf("record %v", r)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "payments.ndjson")); len(b) != 0 {
		t.Fatalf("records routed by a label nobody could know: %s", b)
	}
}
