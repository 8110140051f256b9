package kubernetes

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// DownwardConfig is the `downward_api` block: sidecar mode.
type DownwardConfig struct {
	// Dir is where the pod's downward API volume is mounted; its files
	// `labels` and `annotations` (and, if present, `name`, `namespace`,
	// `uid`, `node_name`, `pod_ip`) are read. Missing files fall back to the
	// environment: POD_NAME, POD_NAMESPACE, POD_UID, NODE_NAME, POD_IP,
	// CONTAINER_NAME, CONTAINER_IMAGE.
	Dir string `yaml:"dir"`
	// Refresh is how often the files are read again (labels and
	// annotations change at run time); default 10s.
	Refresh time.Duration `yaml:"refresh"`
}

// downward holds the pod's own fields, re-read every Refresh.
type downward struct {
	cfg                 DownwardConfig
	labels, annotations include
	cur                 atomic.Pointer[map[string]any]
}

func newDownward(cfg DownwardConfig, labels, annotations []string) (*downward, error) {
	if cfg.Refresh <= 0 {
		cfg.Refresh = 10 * time.Second
	}
	d := &downward{cfg: cfg, labels: include{labels}, annotations: include{annotations}}
	d.load()
	return d, nil
}

func (d *downward) run(ctx context.Context) {
	t := time.NewTicker(d.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.load()
		}
	}
}

// value is a file of the volume or, without it, an environment variable.
func (d *downward) value(file, env string) string {
	if b, err := os.ReadFile(filepath.Join(d.cfg.Dir, file)); err == nil {
		return strings.TrimSpace(string(b))
	}
	return os.Getenv(env)
}

func (d *downward) load() {
	obj := map[string]any{}
	set := func(k, v string) {
		if v != "" {
			obj[k] = v
		}
	}
	name := d.value("name", "POD_NAME")
	set("pod", name)
	set("namespace", d.value("namespace", "POD_NAMESPACE"))
	set("pod_uid", d.value("uid", "POD_UID"))
	set("node", d.value("node_name", "NODE_NAME"))
	set("pod_ip", d.value("pod_ip", "POD_IP"))
	set("container", os.Getenv("CONTAINER_NAME"))
	set("image", os.Getenv("CONTAINER_IMAGE"))
	labels, _ := readDownwardMap(filepath.Join(d.cfg.Dir, "labels"))
	annotations, _ := readDownwardMap(filepath.Join(d.cfg.Dir, "annotations"))
	if l := boxed(labels, d.labels.match); l != nil {
		obj["labels"] = l
	}
	if a := boxed(annotations, d.annotations.match); a != nil {
		obj["annotations"] = a
	}
	if o := ownerFromLabels(name, labels); o.Kind != "" {
		obj["owner"] = map[string]any{"kind": o.Kind, "name": o.Name}
	}
	d.cur.Store(&obj)
}

// add copies the pod's fields into a record's kubernetes object (the
// path's own fields, if any, are written after and win).
func (d *downward) add(obj map[string]any) {
	for k, v := range *d.cur.Load() {
		if m, ok := v.(map[string]any); ok {
			v = maps.Clone(m)
		}
		obj[k] = v
	}
}

// ownerFromLabels derives the workload of a pod from its own name and
// labels, as the downward API cannot show owner references: a
// pod-template-hash label h in a name <deployment>-<h>-<suffix> gives the
// Deployment, a job-name label the Job (or its CronJob, see OwnerOf), a
// statefulset.kubernetes.io/pod-name label the StatefulSet (the name
// without its ordinal).
func ownerFromLabels(name string, labels map[string]string) Owner {
	if h := labels["pod-template-hash"]; h != "" {
		if i := strings.LastIndex(name, "-"+h+"-"); i > 0 {
			return Owner{Kind: "Deployment", Name: name[:i]}
		}
	}
	job := labels["batch.kubernetes.io/job-name"]
	if job == "" {
		job = labels["job-name"]
	}
	if job != "" {
		return OwnerOf("Job", job, "")
	}
	if labels["statefulset.kubernetes.io/pod-name"] == name && name != "" {
		if i := strings.LastIndexByte(name, '-'); i > 0 && isDigits(name[i+1:]) {
			return Owner{Kind: "StatefulSet", Name: name[:i]}
		}
	}
	return Owner{}
}

// readDownwardMap reads a downward API labels or annotations file: one
// key="value" per line, the value quoted as a Go string.
func readDownwardMap(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return out, fmt.Errorf("%s: not key=\"value\": %q", path, line)
		}
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		}
		out[k] = v
	}
	return out, sc.Err()
}
