// Package kubernetes is the filter that adds the pod's identity, parsed from
// the container log file's path (meta.path), to every record:
//
//	/var/log/containers/<pod>_<namespace>_<container>-<container id>.log
//	/var/log/pods/<namespace>_<pod>_<pod uid>/<container>/<n>.log
//
// as {"kubernetes": {"namespace", "pod", "pod_uid", "container",
// "container_id"}}, with only the keys the path gives. The directories may be
// mounted elsewhere (/host/var/log/...): only the last components count. It
// asks nothing of the API server. Parsed paths are cached.
package kubernetes

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/filter"
	"github.com/sidelog/sidelog/plugins"
)

// Config has no keys.
type Config struct{}

// Plugin is the registry entry.
var Plugin = plugins.Filter{
	Config: func() any { return &Config{} },
	New:    func(any, plugins.FilterEnv) (filter.Filter, error) { return New(), nil },
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
	keys []string
	vals []any
}

func newEntry(info *Info) *entry {
	if info == nil {
		return nil
	}
	e := &entry{}
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
	unmatched atomic.Int64
}

// New returns the filter.
func New() *Kubernetes { return &Kubernetes{cache: map[string]*entry{}} }

// Apply adds the kubernetes object; a record whose path is not a container
// log path goes on unchanged (counted as "unmatched").
func (k *Kubernetes) Apply(e *event.Event) bool {
	info := k.lookup(e.Path)
	if info == nil {
		k.unmatched.Add(1)
		return true
	}
	// A fresh object each time (a later stage may change it), merged into
	// one the record already has, set through the overlay so that a raw
	// JSON line is still written from its bytes.
	obj := make(map[string]any, len(info.keys)+1)
	if cur, ok := e.Field(Field); ok {
		if m, ok := cur.(map[string]any); ok {
			for k, v := range m {
				obj[k] = v
			}
		}
	}
	for i, key := range info.keys {
		obj[key] = info.vals[i]
	}
	e.SetField(Field, obj)
	return true
}

func (k *Kubernetes) lookup(path string) *entry {
	k.mu.RLock()
	info, ok := k.cache[path]
	k.mu.RUnlock()
	if ok {
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

// Keys: the filter reads no field (it completes the record before writing).
func (k *Kubernetes) Keys() ([]string, bool) { return nil, false }

// Counters implements filter.Counter.
func (k *Kubernetes) Counters() []filter.Count {
	return []filter.Count{{Name: "unmatched", Value: k.unmatched.Load()}}
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
