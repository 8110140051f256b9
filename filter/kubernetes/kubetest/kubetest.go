// Package kubetest is a small Kubernetes API server for tests: pods and
// namespaces of core/v1, served with apimachinery's own serializers, as
// client-go's reflector expects them:
//
//   - list (GET /api/v1/pods, /api/v1/namespaces) with the collection's
//     resourceVersion;
//   - watch (watch=true) from a resourceVersion, replaying the changes after
//     it, with BOOKMARK events when allowWatchBookmarks is set;
//   - streaming lists (watch=true&sendInitialEvents=true&
//     resourceVersionMatch=NotOlderThan): an ADDED event per object, then a
//     BOOKMARK annotated k8s.io/initial-events-end;
//   - 410 Gone (an ERROR event with a Status of code 410, reason Expired) for
//     a watch that resumes from a resourceVersion older than the last
//     Compact, which forces the client to relist;
//   - DropWatches ends every open watch (a load balancer's idle timeout);
//   - the spec.nodeName, metadata.name and metadata.namespace field
//     selectors (any other field is refused with 400, as the API server does);
//   - GET /api/v1/namespaces/<ns>/pods/<name>, 404 with a Status when absent;
//   - Stop and Start close and reopen the listener on the same address (an
//     API server outage), NewDown gives an address that refuses connections
//     until Start.
//
// It speaks plain HTTP on 127.0.0.1 without authentication; Kubeconfig writes
// a kubeconfig for it.
package kubetest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

var (
	scheme  = runtime.NewScheme()
	jsonSer *kjson.Serializer
	encoder runtime.Encoder
)

func init() {
	if err := corev1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	jsonSer = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme, kjson.SerializerOptions{})
	encoder = serializer.NewCodecFactory(scheme).EncoderForVersion(jsonSer, corev1.SchemeGroupVersion)
}

// change is one entry of the server's history.
type change struct {
	rv       int64
	resource string // "pods" or "namespaces"
	typ      watch.EventType
	obj      runtime.Object
}

// Stats counts the requests the server answered.
type Stats struct {
	Lists      int64 // plain lists
	Watches    int64 // watches from a resourceVersion
	WatchLists int64 // streaming lists (sendInitialEvents=true)
	Gets       int64 // GET of one pod
	Gone       int64 // 410 answers
	Dropped    int64 // watches ended by DropWatches
}

// Server is the test API server.
type Server struct {
	addr string

	mu         sync.Mutex
	rv         int64
	compacted  int64
	pods       map[string]*corev1.Pod
	namespaces map[string]*corev1.Namespace
	history    []change
	changed    chan struct{} // closed and replaced at every change
	drop       chan struct{} // closed and replaced by DropWatches
	srv        *http.Server
	running    bool
	// BookmarkEvery is how often an idle watch that allows bookmarks gets
	// one (default 1s).
	BookmarkEvery time.Duration

	lists, watches, watchLists, gets, gone, dropped atomic.Int64
}

func newServer(addr string) *Server {
	return &Server{
		addr: addr, rv: 100, pods: map[string]*corev1.Pod{}, namespaces: map[string]*corev1.Namespace{},
		changed: make(chan struct{}), drop: make(chan struct{}), BookmarkEvery: time.Second,
	}
}

// Start returns a running server on a free port of 127.0.0.1.
func Start() (*Server, error) {
	s, err := NewDown()
	if err != nil {
		return nil, err
	}
	return s, s.Start()
}

// NewDown returns a server that is not listening yet: its address refuses
// connections until Start.
func NewDown() (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	return newServer(addr), nil
}

// URL is the server's base URL.
func (s *Server) URL() string { return "http://" + s.addr }

// Start listens on the server's address (again, after Stop).
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return nil
	}
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the old listener's port may linger briefly
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve)}
	s.running = true
	go s.srv.Serve(ln)
	return nil
}

// Stop closes the listener and every open connection: clients see an
// outage until Start.
func (s *Server) Stop() {
	s.mu.Lock()
	srv := s.srv
	s.running = false
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// Close stops the server for good.
func (s *Server) Close() { s.Stop() }

// Stats returns the request counts so far.
func (s *Server) Stats() Stats {
	return Stats{Lists: s.lists.Load(), Watches: s.watches.Load(), WatchLists: s.watchLists.Load(),
		Gets: s.gets.Load(), Gone: s.gone.Load(), Dropped: s.dropped.Load()}
}

// Kubeconfig writes a kubeconfig for the server into dir and returns its path.
func (s *Server) Kubeconfig(dir string) (string, error) {
	p := filepath.Join(dir, "kubeconfig")
	data := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
contexts:
- name: test
  context:
    cluster: test
    user: test
current-context: test
users:
- name: test
  user: {}
`, s.URL())
	return p, os.WriteFile(p, []byte(data), 0o600)
}

// record appends a change; s.mu is held.
func (s *Server) record(resource string, typ watch.EventType, obj runtime.Object) {
	s.rv++
	m, _ := meta.Accessor(obj)
	m.SetResourceVersion(strconv.FormatInt(s.rv, 10))
	s.history = append(s.history, change{rv: s.rv, resource: resource, typ: typ, obj: obj.DeepCopyObject()})
	close(s.changed)
	s.changed = make(chan struct{})
}

// AddPod creates a pod (a UID is given when it has none). The pod's
// namespace need not exist.
func (s *Server) AddPod(p *corev1.Pod) *corev1.Pod {
	p = p.DeepCopy()
	if p.UID == "" {
		p.UID = types.UID(fmt.Sprintf("uid-%s-%s-%d", p.Namespace, p.Name, time.Now().UnixNano()))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := p.Namespace + "/" + p.Name
	typ := watch.Added
	if _, ok := s.pods[key]; ok {
		typ = watch.Modified
	}
	s.pods[key] = p
	s.record("pods", typ, p)
	return p.DeepCopy()
}

// UpdatePod replaces a pod (same namespace/name).
func (s *Server) UpdatePod(p *corev1.Pod) { s.AddPod(p) }

// DeletePod deletes a pod; false when there was none.
func (s *Server) DeletePod(namespace, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := namespace + "/" + name
	p, ok := s.pods[key]
	if !ok {
		return false
	}
	delete(s.pods, key)
	s.record("pods", watch.Deleted, p)
	return true
}

// Pod returns a copy of a stored pod.
func (s *Server) Pod(namespace, name string) (*corev1.Pod, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pods[namespace+"/"+name]
	if !ok {
		return nil, false
	}
	return p.DeepCopy(), true
}

// SetNamespace creates or replaces a namespace with these labels.
func (s *Server) SetNamespace(name string, labels map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("ns-" + name), Labels: labels}}
	typ := watch.Added
	if _, ok := s.namespaces[name]; ok {
		typ = watch.Modified
	}
	s.namespaces[name] = ns
	s.record("namespaces", typ, ns)
}

// Compact forgets the history: a watch resuming from an older
// resourceVersion gets 410 Gone and the client must list again.
func (s *Server) Compact() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.compacted = s.rv
	s.history = nil
}

// DropWatches ends every open watch; clients resume from their last
// resourceVersion.
func (s *Server) DropWatches() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.drop)
	s.drop = make(chan struct{})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		s.status(w, apierrors.NewMethodNotSupported(schema.GroupResource{Resource: "pods"}, r.Method))
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	// api v1 ...
	if len(parts) < 3 || parts[0] != "api" || parts[1] != "v1" {
		s.status(w, apierrors.NewNotFound(schema.GroupResource{}, r.URL.Path))
		return
	}
	q := r.URL.Query()
	sel, err := fields.ParseSelector(q.Get("fieldSelector"))
	if err != nil {
		s.status(w, apierrors.NewBadRequest(err.Error()))
		return
	}
	for _, req := range sel.Requirements() {
		switch req.Field {
		case "spec.nodeName", "metadata.name", "metadata.namespace":
		default:
			s.status(w, apierrors.NewBadRequest(fmt.Sprintf("field label not supported: %s", req.Field)))
			return
		}
	}
	rest := parts[2:]
	switch {
	case len(rest) == 1 && (rest[0] == "pods" || rest[0] == "namespaces"):
		if q.Get("watch") == "true" || q.Get("watch") == "1" {
			s.watch(w, r, rest[0], sel)
		} else {
			s.list(w, rest[0], sel)
		}
	case len(rest) == 4 && rest[0] == "namespaces" && rest[2] == "pods":
		s.gets.Add(1)
		p, ok := s.Pod(rest[1], rest[3])
		if !ok {
			s.status(w, apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, rest[3]))
			return
		}
		s.write(w, p)
	default:
		s.status(w, apierrors.NewNotFound(schema.GroupResource{}, r.URL.Path))
	}
}

func matches(obj runtime.Object, sel fields.Selector) bool {
	if sel.Empty() {
		return true
	}
	set := fields.Set{}
	switch o := obj.(type) {
	case *corev1.Pod:
		set["metadata.name"], set["metadata.namespace"], set["spec.nodeName"] = o.Name, o.Namespace, o.Spec.NodeName
	case *corev1.Namespace:
		set["metadata.name"] = o.Name
	}
	return sel.Matches(set)
}

// snapshot returns the current objects of a resource and the current
// resourceVersion; s.mu is held.
func (s *Server) snapshot(resource string, sel fields.Selector) []runtime.Object {
	var out []runtime.Object
	if resource == "pods" {
		for _, p := range s.pods {
			if matches(p, sel) {
				out = append(out, p.DeepCopy())
			}
		}
	} else {
		for _, n := range s.namespaces {
			if matches(n, sel) {
				out = append(out, n.DeepCopy())
			}
		}
	}
	return out
}

func (s *Server) list(w http.ResponseWriter, resource string, sel fields.Selector) {
	s.lists.Add(1)
	s.mu.Lock()
	objs := s.snapshot(resource, sel)
	rv := strconv.FormatInt(s.rv, 10)
	s.mu.Unlock()
	if resource == "pods" {
		l := &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: rv}}
		for _, o := range objs {
			l.Items = append(l.Items, *o.(*corev1.Pod))
		}
		s.write(w, l)
		return
	}
	l := &corev1.NamespaceList{ListMeta: metav1.ListMeta{ResourceVersion: rv}}
	for _, o := range objs {
		l.Items = append(l.Items, *o.(*corev1.Namespace))
	}
	s.write(w, l)
}

func (s *Server) write(w http.ResponseWriter, obj runtime.Object) {
	w.Header().Set("Content-Type", "application/json")
	if err := encoder.Encode(obj, w); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

func (s *Server) status(w http.ResponseWriter, err *apierrors.StatusError) {
	st := err.Status()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(st.Code))
	_ = encoder.Encode(&st, w)
}

// watchStream writes watch events as the API server does: one JSON
// metav1.WatchEvent per frame, the object encoded in full.
type watchStream struct {
	w http.ResponseWriter
	f http.Flusher
}

func (ws *watchStream) send(typ watch.EventType, obj runtime.Object) error {
	raw, err := runtime.Encode(encoder, obj)
	if err != nil {
		return err
	}
	ev := &metav1.WatchEvent{Type: string(typ), Object: runtime.RawExtension{Raw: raw}}
	if err := jsonSer.Encode(ev, ws.w); err != nil {
		return err
	}
	ws.f.Flush()
	return nil
}

func bookmark(resource string, rv int64, initialEnd bool) runtime.Object {
	m := metav1.ObjectMeta{ResourceVersion: strconv.FormatInt(rv, 10)}
	if initialEnd {
		m.Annotations = map[string]string{metav1.InitialEventsAnnotationKey: "true"}
	}
	if resource == "pods" {
		return &corev1.Pod{ObjectMeta: m}
	}
	return &corev1.Namespace{ObjectMeta: m}
}

func (s *Server) watch(w http.ResponseWriter, r *http.Request, resource string, sel fields.Selector) {
	q := r.URL.Query()
	bookmarks := q.Get("allowWatchBookmarks") == "true"
	initial := q.Get("sendInitialEvents") == "true"
	if initial && (!bookmarks || q.Get("resourceVersionMatch") != string(metav1.ResourceVersionMatchNotOlderThan)) {
		s.status(w, apierrors.NewBadRequest("sendInitialEvents requires allowWatchBookmarks=true and resourceVersionMatch=NotOlderThan"))
		return
	}
	ctx := r.Context()
	if t, err := strconv.Atoi(q.Get("timeoutSeconds")); err == nil && t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(t)*time.Second)
		defer cancel()
	}
	var from int64
	if v := q.Get("resourceVersion"); v != "" && v != "0" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			s.status(w, apierrors.NewBadRequest("invalid resourceVersion "+strconv.Quote(v)))
			return
		}
		from = n
	}
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Transfer-Encoding", "chunked")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	ws := &watchStream{w: w, f: flusher}

	s.mu.Lock()
	drop := s.drop
	if initial {
		s.watchLists.Add(1)
		objs := s.snapshot(resource, sel)
		pos := s.rv
		s.mu.Unlock()
		for _, o := range objs {
			if ws.send(watch.Added, o) != nil {
				return
			}
		}
		if ws.send(watch.Bookmark, bookmark(resource, pos, true)) != nil {
			return
		}
		from = pos
		s.mu.Lock()
	} else {
		s.watches.Add(1)
		if from == 0 {
			from = s.rv
		}
	}
	if from < s.compacted {
		s.mu.Unlock()
		s.gone.Add(1)
		st := apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", from, s.compacted)).Status()
		_ = ws.send(watch.Error, &st)
		return
	}
	s.mu.Unlock()

	every := s.BookmarkEvery
	if every <= 0 {
		every = time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		s.mu.Lock()
		var pending []change
		for _, c := range s.history {
			if c.rv > from && c.resource == resource {
				pending = append(pending, c)
			}
		}
		changed, cur := s.changed, s.rv
		s.mu.Unlock()
		for _, c := range pending {
			from = c.rv
			if !matches(c.obj, sel) {
				continue
			}
			if ws.send(c.typ, c.obj) != nil {
				return
			}
		}
		select {
		case <-changed:
		case <-tick.C:
			if bookmarks && cur > from {
				from = cur
			}
			if bookmarks && ws.send(watch.Bookmark, bookmark(resource, from, false)) != nil {
				return
			}
		case <-drop:
			s.dropped.Add(1)
			return
		case <-ctx.Done():
			return
		}
	}
}
