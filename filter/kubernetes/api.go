package kubernetes

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// Annotations that steer collection, read from every pod of the node.
const (
	// AnnotationExclude "true" drops every line of the pod;
	// AnnotationExclude + "-<container>" those of one container.
	AnnotationExclude = "sidelog.io/exclude"
	// AnnotationParser names one of the config's `parsers:` for the pod's
	// containers.
	AnnotationParser = "sidelog.io/parser"
	steerPrefix      = "sidelog.io/"
)

// podMeta is what the API server says about one pod, ready for records.
type podMeta struct {
	uid, namespace, name string
	labels, annotations  map[string]any // filtered by the include lists
	node, podIP          string
	images               map[string]string // container name -> image
	owner                Owner
	exclude              bool
	excludeContainers    map[string]bool
	parser               string
	deleted              time.Time // zero while the pod exists
}

// apiCache holds this node's pods and every namespace's labels, fed by two
// informers (list + watch) on the API server.
type apiCache struct {
	cfg         APIConfig
	labels      include
	annotations include
	log         *slog.Logger

	client *rest.RESTClient

	mu       sync.RWMutex
	byUID    map[string]*podMeta
	byName   map[string]*podMeta // namespace/name
	nsLabels map[string]map[string]any
	tried    map[string]time.Time // pods missed once: no second wait
	getAfter time.Time            // no direct GET before (after a failed one)

	created time.Time     // the start window of get's first waits
	synced  chan struct{} // closed once both informers have listed

	missing, gets, waits, getFailures atomic.Int64
	// nsGen counts namespace label changes: a record's object built
	// before one is built again (shared objects, see Kubernetes.object).
	nsGen atomic.Uint64
}

func newAPICache(cfg APIConfig, labels, annotations []string, log *slog.Logger) *apiCache {
	return &apiCache{
		cfg: cfg, labels: include{labels}, annotations: include{annotations}, log: log,
		byUID: map[string]*podMeta{}, byName: map[string]*podMeta{}, nsLabels: map[string]map[string]any{},
		tried: map[string]time.Time{}, synced: make(chan struct{}), created: time.Now(),
	}
}

var (
	scheme   = runtime.NewScheme()
	codecs   serializer.CodecFactory
	klogOnce sync.Once
	corev1GV = corev1.SchemeGroupVersion
)

func init() {
	if err := corev1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	codecs = serializer.NewCodecFactory(scheme)
}

// restConfig is the in-cluster service account (kubeconfig "") or the
// kubeconfig file's current context.
func restConfig(kubeconfig string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	if err != nil {
		return nil, err
	}
	cfg.GroupVersion = &corev1GV
	cfg.APIPath = "/api"
	cfg.NegotiatedSerializer = codecs.WithoutConversion()
	cfg.UserAgent = "sidelog"
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 20, 40
	}
	return cfg, nil
}

// run starts the informers and keeps the cache until ctx ends. A client
// that cannot be built (no in-cluster service account, a bad kubeconfig) is
// logged; records then carry the path fields only.
func (c *apiCache) run(ctx context.Context) {
	klogOnce.Do(func() { klog.SetSlogLogger(c.log) })
	cfg, err := restConfig(c.cfg.Kubeconfig)
	if err == nil {
		c.client, err = rest.RESTClientFor(cfg)
	}
	if err != nil {
		c.log.Error("kubernetes API client not built: records get the path fields only", "error", err.Error())
		return
	}
	pods := cache.NewListWatchFromClient(c.client, "pods", metav1.NamespaceAll, fields.OneTermEqualSelector("spec.nodeName", c.cfg.NodeName))
	_, podCtl := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: pods,
		ObjectType:    &corev1.Pod{},
		Transform:     c.transformPod,
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { c.upsertPod(o) },
			UpdateFunc: func(_, o any) { c.upsertPod(o) },
			DeleteFunc: c.deletePod,
		},
	})
	nss := cache.NewListWatchFromClient(c.client, "namespaces", metav1.NamespaceAll, fields.Everything())
	_, nsCtl := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: nss,
		ObjectType:    &corev1.Namespace{},
		Transform:     c.transformNamespace,
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { c.upsertNamespace(o) },
			UpdateFunc: func(_, o any) { c.upsertNamespace(o) },
			// A deleted namespace keeps its labels: its pods' files may
			// still be read; the map holds one small entry per name.
		},
	})
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); podCtl.RunWithContext(ctx) }()
	go func() { defer wg.Done(); nsCtl.RunWithContext(ctx) }()
	go func() {
		defer wg.Done()
		for _, ctl := range []cache.Controller{podCtl, nsCtl} {
			select {
			case <-ctl.HasSyncedChecker().Done():
			case <-ctx.Done():
				return
			}
		}
		close(c.synced)
		c.log.Info("kubernetes pod metadata listed", "node", c.cfg.NodeName, "pods", c.podCount())
	}()
	sweep := time.NewTicker(min(c.cfg.DeletedGrace/2, 30*time.Second) + time.Millisecond)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case now := <-sweep.C:
			c.sweep(now)
		}
	}
}

func (c *apiCache) podCount() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.byUID)
}

// transformPod keeps only what records and steering use: name, namespace,
// uid, the included labels (and pod-template-hash, for the owner), the
// included and the sidelog.io/ annotations, the controller reference, the
// node, the pod IP and each container's name and image. managedFields,
// the spec's volumes, env, probes and the status' conditions are dropped
// before the object is stored.
func (c *apiCache) transformPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
		},
		Spec:   corev1.PodSpec{NodeName: p.Spec.NodeName},
		Status: corev1.PodStatus{PodIP: p.Status.PodIP},
	}
	for k, v := range p.Labels {
		if k == "pod-template-hash" || c.labels.match(k) {
			if out.Labels == nil {
				out.Labels = map[string]string{}
			}
			out.Labels[k] = v
		}
	}
	for k, v := range p.Annotations {
		if len(k) > len(steerPrefix) && k[:len(steerPrefix)] == steerPrefix || c.annotations.match(k) {
			if out.Annotations == nil {
				out.Annotations = map[string]string{}
			}
			out.Annotations[k] = v
		}
	}
	if ref := metav1.GetControllerOf(p); ref != nil {
		out.OwnerReferences = []metav1.OwnerReference{{Kind: ref.Kind, Name: ref.Name}}
	} else if len(p.OwnerReferences) > 0 && p.OwnerReferences[0].Controller == nil {
		ref := p.OwnerReferences[0]
		out.OwnerReferences = []metav1.OwnerReference{{Kind: ref.Kind, Name: ref.Name}}
	}
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, ct := range list {
			out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: ct.Name, Image: ct.Image})
		}
	}
	for _, ct := range p.Spec.EphemeralContainers {
		out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: ct.Name, Image: ct.Image})
	}
	return out, nil
}

func (c *apiCache) transformNamespace(obj any) (any, error) {
	n, ok := obj.(*corev1.Namespace)
	if !ok {
		return obj, nil
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, Labels: c.labels.filter(n.Labels),
	}}, nil
}

func boxed(m map[string]string, keep func(string) bool) map[string]any {
	var out map[string]any
	for k, v := range m {
		if keep(k) {
			if out == nil {
				out = make(map[string]any, len(m))
			}
			out[k] = v
		}
	}
	return out
}

// metaOf builds a podMeta from a transformed pod.
func (c *apiCache) metaOf(p *corev1.Pod) *podMeta {
	m := &podMeta{
		uid: string(p.UID), namespace: p.Namespace, name: p.Name, node: p.Spec.NodeName, podIP: p.Status.PodIP,
		labels:      boxed(p.Labels, c.labels.match),
		annotations: boxed(p.Annotations, c.annotations.match),
	}
	if len(p.OwnerReferences) > 0 {
		ref := p.OwnerReferences[0]
		m.owner = OwnerOf(ref.Kind, ref.Name, p.Labels["pod-template-hash"])
	}
	for _, ct := range p.Spec.Containers {
		if m.images == nil {
			m.images = make(map[string]string, len(p.Spec.Containers))
		}
		m.images[ct.Name] = ct.Image
	}
	for k, v := range p.Annotations {
		switch {
		case k == AnnotationExclude:
			m.exclude = v == "true"
		case len(k) > len(AnnotationExclude)+1 && k[:len(AnnotationExclude)+1] == AnnotationExclude+"-":
			if v == "true" {
				if m.excludeContainers == nil {
					m.excludeContainers = map[string]bool{}
				}
				m.excludeContainers[k[len(AnnotationExclude)+1:]] = true
			}
		case k == AnnotationParser:
			m.parser = v
		}
	}
	return m
}

func (c *apiCache) upsertPod(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	m := c.metaOf(p)
	c.mu.Lock()
	c.byUID[m.uid] = m
	c.byName[m.namespace+"/"+m.name] = m
	c.mu.Unlock()
}

// deletePod keeps the pod's metadata for deleted_grace: its files are still
// being read.
func (c *apiCache) deletePod(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	c.mu.Lock()
	if m := c.byUID[string(p.UID)]; m != nil && m.deleted.IsZero() {
		d := *m
		d.deleted = time.Now()
		c.byUID[m.uid] = &d
		if c.byName[m.namespace+"/"+m.name] == m {
			c.byName[m.namespace+"/"+m.name] = &d
		}
	}
	c.mu.Unlock()
}

func (c *apiCache) upsertNamespace(obj any) {
	n, ok := obj.(*corev1.Namespace)
	if !ok {
		return
	}
	l := boxed(n.Labels, func(string) bool { return true })
	c.mu.Lock()
	c.nsLabels[n.Name] = l
	c.nsGen.Add(1)
	c.mu.Unlock()
}

// sweep forgets pods deleted more than deleted_grace ago and old misses.
func (c *apiCache) sweep(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for uid, m := range c.byUID {
		if !m.deleted.IsZero() && now.Sub(m.deleted) > c.cfg.DeletedGrace {
			delete(c.byUID, uid)
			if c.byName[m.namespace+"/"+m.name] == m {
				delete(c.byName, m.namespace+"/"+m.name)
			}
		}
	}
	for k, t := range c.tried {
		if now.Sub(t) > 10*time.Minute {
			delete(c.tried, k)
		}
	}
}

// lookup finds a pod by the path's pod UID (/var/log/pods) or, for paths
// without one (/var/log/containers), by namespace/name.
func (c *apiCache) lookup(info *Info) *podMeta {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if info.PodUID != "" {
		return c.byUID[info.PodUID]
	}
	return c.byName[info.Namespace+"/"+info.Pod]
}

func (c *apiCache) namespaceLabels(ns string) map[string]any {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.nsLabels[ns]
}

// get returns the pod's metadata. A pod the cache does not know yet (its
// first lines, or the agent's first seconds) is waited for once per pod,
// at most api.miss_wait: until the first list if the informer has not
// listed yet (and the filter was built less than miss_wait ago: an API server
// that is down at start-up costs one wait, not one per pod), otherwise one
// direct GET of the pod. Past that, nil: the record goes on with the path
// fields.
func (c *apiCache) get(info *Info) *podMeta {
	if m := c.lookup(info); m != nil {
		return m
	}
	wait := *c.cfg.MissWait
	if wait <= 0 {
		return nil
	}
	key := info.PodUID
	if key == "" {
		key = info.Namespace + "/" + info.Pod
	}
	now := time.Now()
	c.mu.Lock()
	if _, ok := c.tried[key]; ok {
		c.mu.Unlock()
		return nil
	}
	if len(c.tried) >= maxCache {
		clear(c.tried)
	}
	c.tried[key] = now
	c.mu.Unlock()
	c.waits.Add(1)
	deadline := now.Add(wait)
	select {
	case <-c.synced:
	default:
		until := c.created.Add(wait)
		if until.After(deadline) {
			until = deadline
		}
		if d := time.Until(until); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-c.synced:
			case <-t.C:
			}
			t.Stop()
		}
		if m := c.lookup(info); m != nil {
			return m
		}
		select {
		case <-c.synced:
		default:
			return nil // the API server has not answered yet
		}
	}
	if m := c.lookup(info); m != nil {
		return m
	}
	return c.getPod(info, deadline)
}

// getPod asks the API server for one pod, until deadline.
func (c *apiCache) getPod(info *Info, deadline time.Time) *podMeta {
	c.mu.RLock()
	blocked := time.Now().Before(c.getAfter)
	c.mu.RUnlock()
	if blocked || c.client == nil {
		return nil
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	c.gets.Add(1)
	p := &corev1.Pod{}
	err := c.client.Get().Namespace(info.Namespace).Resource("pods").Name(info.Pod).Do(ctx).Into(p)
	if err != nil {
		if !apierrors.IsNotFound(err) {
			c.getFailures.Add(1)
			c.mu.Lock()
			c.getAfter = time.Now().Add(10 * time.Second)
			c.mu.Unlock()
		}
		return nil
	}
	if info.PodUID != "" && string(p.UID) != info.PodUID {
		return nil
	}
	tp, _ := c.transformPod(p)
	// Stored as if the informer had brought it; the informer's own event
	// replaces it.
	c.upsertPod(tp)
	return c.lookup(info)
}

func (c *apiCache) hasNamespace(ns string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	_, ok := c.nsLabels[ns]
	return ok
}
