// Package kubernetes is the filter that adds the pod's identity, parsed from
// the container log file's path (meta.path), to every record:
//
//	/var/log/containers/<pod>_<namespace>_<container>-<container id>.log
//	/var/log/pods/<namespace>_<pod>_<pod uid>/<container>/<n>.log
//
// as {"kubernetes": {"namespace", "pod", "pod_uid", "container",
// "container_id"}}, with only the keys the path gives. The directories may be
// mounted elsewhere (/host/var/log/...): only the last components count.
// Parsed paths are cached.
//
// With `api` (the DaemonSet), the filter also watches this node's pods and
// every namespace on the API server (see api.go) and adds labels,
// annotations, namespace_labels, node, pod_ip, image and owner; the pods'
// sidelog.io/exclude and sidelog.io/parser annotations steer collection
// before parsing (Steer). With `downward_api` (a sidecar), the same fields
// come from the pod's own downward API files and environment.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/filter"
	"github.com/sidelog/sidelog/plugins"
)

// Config is the filter's configuration.
type Config struct {
	// API turns on pod metadata from the API server (omit: path only).
	API *APIConfig `yaml:"api"`
	// Labels are the pod (and namespace) labels copied into records, as
	// globs; default ["*"]. Annotations likewise; default none.
	// Secret-looking keys are copied only when named exactly.
	Labels      []string `yaml:"labels"`
	Annotations []string `yaml:"annotations"`
	// DownwardAPI reads the same fields from the pod's own downward API
	// (sidecar mode, no API access).
	DownwardAPI *DownwardConfig `yaml:"downward_api"`
}

// APIConfig is the `api` block.
type APIConfig struct {
	// Kubeconfig is a kubeconfig file; empty: the in-cluster service
	// account.
	Kubeconfig string `yaml:"kubeconfig"`
	// NodeName restricts the pod watch to this node (spec.nodeName).
	NodeName string `yaml:"node_name"`
	// MissWait bounds how long the first lines of a pod the cache does not
	// know yet wait for its metadata (default 2s; 0: never wait).
	MissWait *time.Duration `yaml:"miss_wait"`
	// DeletedGrace is how long a deleted pod's metadata is kept for its
	// files still being read (default 5m).
	DeletedGrace time.Duration `yaml:"deleted_grace"`
}

// DefaultMissWait is api.miss_wait when it is not set.
const DefaultMissWait = 2 * time.Second

// MaxMissWait is the largest api.miss_wait accepted.
const MaxMissWait = 10 * time.Second

func defaultConfig() any {
	return &Config{Labels: []string{"*"}}
}

// Validate implements plugins.Validator.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &plugins.KeyError{Key: key, Err: fmt.Errorf(format, args...)})
	}
	if c.API != nil {
		if c.API.NodeName == "" {
			bad("api.node_name", "required: the node whose pods are watched (NODE_NAME from spec.nodeName)")
		}
		if w := c.API.MissWait; w != nil && (*w < 0 || *w > MaxMissWait) {
			bad("api.miss_wait", "must be between 0 and %s", MaxMissWait)
		}
		if c.API.DeletedGrace < 0 {
			bad("api.deleted_grace", "must not be negative")
		}
		if c.DownwardAPI != nil {
			bad("downward_api", "api and downward_api exclude each other (DaemonSet or sidecar)")
		}
	}
	for _, l := range [][]string{c.Labels, c.Annotations} {
		for _, p := range l {
			if p == "" {
				bad("labels", "empty pattern")
			}
		}
	}
	if c.DownwardAPI != nil && c.DownwardAPI.Dir == "" {
		bad("downward_api.dir", "required (where the downward API volume is mounted, e.g. /etc/podinfo)")
	}
	return errors.Join(errs...)
}

// Plugin is the registry entry.
var Plugin = plugins.Filter{
	Config: defaultConfig,
	New: func(cfg any, env plugins.FilterEnv) (filter.Filter, error) {
		c := cfg.(*Config)
		log := env.Logger
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		return NewWith(*c, log)
	},
}

func init() { plugins.RegisterFilter("kubernetes", Plugin) }

// Field is the record key the filter writes.
const Field = "kubernetes"

// Info is what a path tells.
type Info struct {
	Namespace, Pod, PodUID, Container, ContainerID string
}

// entry is a cached Info with its values boxed once.
type entry struct {
	info *Info
	keys []string
	vals []any
	// obj is the kubernetes object of this path's records, built and
	// encoded once (see Kubernetes.object).
	obj atomic.Pointer[sharedObject]
}

// sharedObject is the kubernetes object every record of one file gets
// while its pod's metadata (meta, nil without) and the namespace labels
// (nsGen) stay as they were. Nobody changes it: event.SetFieldShared.
type sharedObject struct {
	meta  *podMeta
	nsGen uint64
	obj   map[string]any
	enc   []byte
}

func newEntry(info *Info) *entry {
	if info == nil {
		return nil
	}
	e := &entry{info: info}
	add := func(k, v string) {
		if v != "" {
			e.keys = append(e.keys, k)
			e.vals = append(e.vals, v)
		}
	}
	add("namespace", info.Namespace)
	add("pod", info.Pod)
	add("pod_uid", info.PodUID)
	add("container", info.Container)
	add("container_id", info.ContainerID)
	return e
}

// maxCache bounds the cache; beyond it the cache starts afresh.
const maxCache = 8192

// Kubernetes is the built filter.
type Kubernetes struct {
	mu        sync.RWMutex
	cache     map[string]*entry // nil value: the path is not a container log
	last      atomic.Pointer[lastLookup]
	unmatched atomic.Int64
	api       *apiCache // nil: no API metadata
	down      *downward // nil: no downward API
}

// New returns the filter that reads paths only.
func New() *Kubernetes { return &Kubernetes{cache: map[string]*entry{}} }

// NewWith returns the filter for a config.
func NewWith(c Config, log *slog.Logger) (*Kubernetes, error) {
	k := New()
	if c.API != nil {
		api := *c.API
		if api.MissWait == nil {
			d := DefaultMissWait
			api.MissWait = &d
		}
		if api.DeletedGrace == 0 {
			api.DeletedGrace = 5 * time.Minute
		}
		k.api = newAPICache(api, c.Labels, c.Annotations, log)
	}
	if c.DownwardAPI != nil {
		d, err := newDownward(*c.DownwardAPI, c.Labels, c.Annotations)
		if err != nil {
			return nil, err
		}
		k.down = d
	}
	return k, nil
}

var _ filter.Steerer = (*Kubernetes)(nil)

// Run watches the API server (with `api`) or the downward API files (with
// `downward_api`) until ctx ends; the engine calls it when the pipeline
// starts, never at load or validate.
func (k *Kubernetes) Run(ctx context.Context) {
	switch {
	case k.api != nil:
		k.api.run(ctx)
	case k.down != nil:
		k.down.run(ctx)
	}
}

// Steer implements filter.Steerer: before the line at path is parsed, the
// pod's sidelog.io/exclude and sidelog.io/parser annotations say whether it
// is wanted and which named parser reads it. It may wait for a new pod's
// metadata, at most api.miss_wait once per pod.
func (k *Kubernetes) Steer(path string) (exclude bool, parser string) {
	if k.api == nil {
		return false, ""
	}
	en := k.lookup(path)
	if en == nil {
		return false, ""
	}
	m := k.api.get(en.info)
	if m == nil {
		return false, ""
	}
	return m.exclude || m.excludeContainers[en.info.Container], m.parser
}

// Apply adds the kubernetes object; a record whose path is not a container
// log path goes on unchanged (counted as "unmatched"), unless the downward
// API gives the pod's fields (sidecar mode).
func (k *Kubernetes) Apply(e *event.Event) bool {
	info := k.lookup(e.Path)
	if info == nil && k.down == nil {
		k.unmatched.Add(1)
		return true
	}
	cur, has := e.Field(Field)
	if info != nil && k.down == nil && !has {
		// The common case: one object for every record of the file, set
		// shared with its encoding (the record copies it only if a later
		// stage changes it).
		var m *podMeta
		if k.api != nil {
			if m = k.api.get(info.info); m == nil {
				k.api.missing.Add(1)
			}
		}
		o := k.object(info, m)
		e.SetFieldShared(Field, o.obj, o.enc)
		return true
	}
	// A fresh object each time (a later stage may change it), merged into
	// one the record already has, set through the overlay so that a raw
	// JSON line is still written from its bytes.
	n := 1
	if info != nil {
		n += len(info.keys)
	}
	obj := make(map[string]any, n)
	if has {
		if m, ok := cur.(map[string]any); ok {
			for k, v := range m {
				obj[k] = v
			}
		}
	}
	if k.down != nil {
		k.down.add(obj)
	}
	if info == nil {
		e.SetField(Field, obj)
		return true
	}
	for i, key := range info.keys {
		obj[key] = info.vals[i]
	}
	if k.api != nil {
		if m := k.api.get(info.info); m != nil {
			k.api.add(obj, m, info.info.Container)
		} else {
			k.api.missing.Add(1)
		}
	}
	e.SetField(Field, obj)
	return true
}

// object returns the path's shared kubernetes object for the pod metadata
// m (nil: path fields only), building and encoding it again when the pod
// or the namespaces' labels changed since.
func (k *Kubernetes) object(en *entry, m *podMeta) *sharedObject {
	var gen uint64
	if m != nil {
		gen = k.api.nsGen.Load()
	}
	if o := en.obj.Load(); o != nil && o.meta == m && o.nsGen == gen {
		return o
	}
	obj := make(map[string]any, len(en.keys)+8)
	for i, key := range en.keys {
		obj[key] = en.vals[i]
	}
	if m != nil {
		k.api.add(obj, m, en.info.Container)
	}
	o := &sharedObject{meta: m, nsGen: gen, obj: obj, enc: event.AppendValue(nil, obj)}
	en.obj.Store(o)
	return o
}

// add writes the pod's metadata into a record's kubernetes object. Maps are
// copied: a later stage may change the record.
func (c *apiCache) add(obj map[string]any, m *podMeta, container string) {
	if _, ok := obj["pod_uid"]; !ok && m.uid != "" {
		obj["pod_uid"] = m.uid
	}
	if m.labels != nil {
		obj["labels"] = maps.Clone(m.labels)
	}
	if m.annotations != nil {
		obj["annotations"] = maps.Clone(m.annotations)
	}
	if nl := c.namespaceLabels(m.namespace); nl != nil {
		obj["namespace_labels"] = maps.Clone(nl)
	}
	if m.node != "" {
		obj["node"] = m.node
	}
	if m.podIP != "" {
		obj["pod_ip"] = m.podIP
	}
	if img := m.images[container]; img != "" {
		obj["image"] = img
	}
	if m.owner.Kind != "" {
		obj["owner"] = map[string]any{"kind": m.owner.Kind, "name": m.owner.Name}
	}
}

// lastLookup is the path looked up last and its entry: the records of a
// batch come file by file, so most lookups are the one before (and their
// paths the same string, compared by pointer first).
type lastLookup struct {
	path string
	info *entry
}

func (k *Kubernetes) lookup(path string) *entry {
	if l := k.last.Load(); l != nil && l.path == path {
		return l.info
	}
	k.mu.RLock()
	info, ok := k.cache[path]
	k.mu.RUnlock()
	if ok {
		k.last.Store(&lastLookup{path, info})
		return info
	}
	info = newEntry(Parse(path))
	k.mu.Lock()
	if len(k.cache) >= maxCache {
		k.cache = make(map[string]*entry, 64)
	}
	k.cache[path] = info
	k.mu.Unlock()
	return info
}

// Keys: the filter reads only its own field (a record that has one gets
// it merged): selected, the parser says whether a line has it, and a
// line without it (the common case) is not searched again.
func (k *Kubernetes) Keys() ([]string, bool) { return []string{Field}, false }

// Counters implements filter.Counter: "unmatched" (not a container log
// path); with `api`: "metadata_missing" (records that went on with the path
// fields only), "metadata_waits" (new pods waited for), "api_gets" (direct
// GETs of a pod) and "api_get_failures".
func (k *Kubernetes) Counters() []filter.Count {
	out := []filter.Count{{Name: "unmatched", Value: k.unmatched.Load()}}
	if a := k.api; a != nil {
		out = append(out,
			filter.Count{Name: "metadata_missing", Value: a.missing.Load()},
			filter.Count{Name: "metadata_waits", Value: a.waits.Load()},
			filter.Count{Name: "api_gets", Value: a.gets.Load()},
			filter.Count{Name: "api_get_failures", Value: a.getFailures.Load()},
		)
	}
	return out
}

// Parse reads a container log path; nil when it is not one.
func Parse(path string) *Info {
	parts := strings.Split(path, "/")
	n := len(parts)
	// .../containers/<pod>_<namespace>_<container>-<id>.log
	if n >= 2 && parts[n-2] == "containers" {
		name, ok := strings.CutSuffix(parts[n-1], ".log")
		if !ok {
			return nil
		}
		f := strings.Split(name, "_")
		if len(f) != 3 || f[0] == "" || f[1] == "" {
			return nil
		}
		dash := strings.LastIndexByte(f[2], '-')
		if dash <= 0 || !isHex(f[2][dash+1:]) {
			return nil
		}
		return &Info{Pod: f[0], Namespace: f[1], Container: f[2][:dash], ContainerID: f[2][dash+1:]}
	}
	// .../pods/<namespace>_<pod>_<uid>/<container>/<n>.log[.<rotation suffix>]
	if n >= 4 && parts[n-4] == "pods" {
		file := parts[n-1]
		i := strings.Index(file, ".log")
		if i <= 0 || !isDigits(file[:i]) || (len(file) > i+4 && file[i+4] != '.') {
			return nil
		}
		f := strings.Split(parts[n-3], "_")
		if len(f) != 3 || f[0] == "" || f[1] == "" || f[2] == "" || parts[n-2] == "" {
			return nil
		}
		return &Info{Namespace: f[0], Pod: f[1], PodUID: f[2], Container: parts[n-2]}
	}
	return nil
}

func isHex(s string) bool {
	if len(s) < 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
