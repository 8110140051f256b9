package kubetest

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func get(t *testing.T, s *Server, path string, q url.Values) *http.Response {
	t.Helper()
	resp, err := http.Get(s.URL() + path + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func pod(name, node string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}, Spec: corev1.PodSpec{NodeName: node}}
}

// A plain list honours the spec.nodeName field selector and is decoded by
// apimachinery's own decoder; an unsupported field is a 400.
func TestListFieldSelector(t *testing.T) {
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.AddPod(pod("a", "node-a"))
	s.AddPod(pod("b", "node-b"))
	resp := get(t, s, "/api/v1/pods", url.Values{"fieldSelector": {"spec.nodeName=node-a"}})
	var body []byte
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		body = append(body, sc.Bytes()...)
	}
	obj, _, err := runtime.Decoder(jsonSer).Decode(body, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := obj.(*corev1.PodList)
	if len(l.Items) != 1 || l.Items[0].Name != "a" || l.ResourceVersion == "" {
		t.Fatalf("list %+v", l)
	}
	if s.Stats().Lists != 1 {
		t.Errorf("stats %+v", s.Stats())
	}
	if r := get(t, s, "/api/v1/pods", url.Values{"fieldSelector": {"status.phase=Running"}}); r.StatusCode != http.StatusBadRequest {
		t.Errorf("unsupported field selector: %d", r.StatusCode)
	}
	if r := get(t, s, "/api/v1/namespaces/ns/pods/zz", nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("missing pod: %d", r.StatusCode)
	}
}

type wireEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

// A streaming list sends the objects, then the initial-events-end bookmark;
// a watch from a compacted resourceVersion gets 410 Gone.
func TestStreamingListAndGone(t *testing.T) {
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.AddPod(pod("a", "node-a"))
	s.AddPod(pod("b", "node-b"))
	if r := get(t, s, "/api/v1/pods", url.Values{"watch": {"true"}, "sendInitialEvents": {"true"}}); r.StatusCode != http.StatusBadRequest {
		t.Errorf("sendInitialEvents without bookmarks: %d", r.StatusCode)
	}
	resp := get(t, s, "/api/v1/pods", url.Values{"watch": {"true"}, "sendInitialEvents": {"true"}, "allowWatchBookmarks": {"true"},
		"resourceVersionMatch": {"NotOlderThan"}, "fieldSelector": {"spec.nodeName=node-a"}})
	dec := json.NewDecoder(resp.Body)
	var evs []wireEvent
	for len(evs) < 2 {
		var ev wireEvent
		if err := dec.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	var p corev1.Pod
	json.Unmarshal(evs[0].Object, &p)
	if evs[0].Type != "ADDED" || p.Name != "a" {
		t.Fatalf("first event %s %s", evs[0].Type, p.Name)
	}
	var bm corev1.Pod
	json.Unmarshal(evs[1].Object, &bm)
	if evs[1].Type != "BOOKMARK" || bm.Annotations[metav1.InitialEventsAnnotationKey] != "true" {
		t.Fatalf("second event %s %v", evs[1].Type, bm.Annotations)
	}
	// A change after the bookmark is streamed.
	s.AddPod(pod("c", "node-a"))
	var ev wireEvent
	if err := dec.Decode(&ev); err != nil || ev.Type != "ADDED" {
		t.Fatalf("%v %+v", err, ev)
	}
	old := bm.ResourceVersion
	s.Compact()
	r := get(t, s, "/api/v1/pods", url.Values{"watch": {"true"}, "resourceVersion": {old}})
	var gone wireEvent
	if err := json.NewDecoder(r.Body).Decode(&gone); err != nil {
		t.Fatal(err)
	}
	var st metav1.Status
	json.Unmarshal(gone.Object, &st)
	if gone.Type != "ERROR" || st.Code != http.StatusGone || st.Reason != metav1.StatusReasonExpired {
		t.Fatalf("watch from a compacted version: %s %+v", gone.Type, st)
	}
}
