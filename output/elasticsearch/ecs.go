package elasticsearch

import (
	"bytes"
	"encoding/json"
	"sort"
	"strconv"
	"strings"

	"github.com/sidelog/sidelog/event"
)

// The ecs: true layout: each document also carries the Elastic Common
// Schema fields that Kibana's Logs views, Elastic Agent's dashboards and
// most ECS-aware tooling read:
//
//	agent.type "sidelog", agent.version, agent.id (the instance id)
//	host.name                   the agent's host name
//	log.file.path, log.offset   the source file and the byte offset just
//	                            past the line (sidelog's source position;
//	                            Filebeat's log.offset is the line's start)
//	data_stream.type/dataset/namespace   in data_stream mode, from the
//	                            rendered name <type>-<dataset>-<namespace>
//	kubernetes.*, container.*   the kubernetes filter's object in the form
//	                            Elastic's integrations use (see ecsKubernetes)
//
// The record's own fields win, except data_stream.*, which must equal the
// data stream's name parts (Elasticsearch 8 maps them constant_keyword and
// refuses a document that differs): an ECS object the record already has
// (host: {ip: ...}) gets only the members it lacks; a record whose host,
// log or agent is not an object (a string "host": "web-1") keeps it and
// gets none of ours there.
//
// Kubernetes: without ecs, kubernetes.pod is the pod's name (a string);
// ECS tooling wants kubernetes.pod.name, an object. The two cannot share an
// index (a field is either a keyword or an object: the engine refuses the
// other shape with mapper_parsing_exception), so with ecs: true the whole
// kubernetes object is rewritten into the ECS form, and without it left as
// the filter made it; routes and filters always see sidelog's form (the
// layout is applied when the output encodes). Write an index with one
// layout only.
type ecsLayout struct {
	agent      []byte // the agent object
	host       []byte // the host object; nil without a host name
	dataStream bool   // add data_stream.* (mode data_stream)
}

func newECSLayout(instanceID, hostname, version string, dataStream bool) *ecsLayout {
	l := &ecsLayout{dataStream: dataStream}
	a := []byte(`{"type":"sidelog"`)
	ver := version
	if ver == "" {
		ver = "dev"
	}
	a = append(a, `,"version":`...)
	a = event.AppendString(a, ver)
	if instanceID != "" {
		a = append(a, `,"id":`...)
		a = event.AppendString(a, instanceID)
	}
	l.agent = append(a, '}')
	if hostname != "" {
		l.host = event.AppendString(append([]byte(nil), `{"name":`...), hostname)
		l.host = append(l.host, '}')
	}
	return l
}

// ecsKeys are the top-level members the layout adds or rewrites, quoted.
var ecsKeys = [][]byte{[]byte(`"agent"`), []byte(`"host"`), []byte(`"log"`), []byte(`"data_stream"`), []byte(`"kubernetes"`), []byte(`"container"`)}

// apply rewrites the JSON object at dst[doc:] (it ends dst) into the ECS
// layout; index is the document's rendered index name.
func (l *ecsLayout) apply(dst []byte, doc int, e *event.Event, index []byte) []byte {
	adds := l.members(e, index)
	body := dst[doc:]
	conflict := false
	for _, k := range ecsKeys {
		if bytes.Contains(body, k) {
			conflict = true
			break
		}
	}
	if !conflict {
		return spliceMembers(dst, doc, adds)
	}
	out, ok := l.merge(body, e, adds)
	if !ok {
		// Not a JSON object (the engine will say so): as it is.
		return dst
	}
	return append(dst[:doc], out...)
}

// member is one top-level member: its key and its value's JSON.
type member struct {
	key string
	val []byte
}

// members returns the layout's own members for e, in a fixed order.
func (l *ecsLayout) members(e *event.Event, index []byte) []member {
	m := make([]member, 0, 5)
	m = append(m, member{"agent", l.agent})
	if l.host != nil {
		m = append(m, member{"host", l.host})
	}
	var lg []byte
	if e.Path != "" || e.Pos.Offset != 0 {
		lg = make([]byte, 0, len(e.Path)+48)
	}
	if e.Path != "" {
		lg = event.AppendString(append(lg, `{"file":{"path":`...), e.Path)
		lg = append(lg, '}')
	}
	if p := e.Pos; p.Offset != 0 || p.FileID != (event.FileID{}) {
		if len(lg) == 0 {
			lg = append(lg, '{')
		} else {
			lg = append(lg, ',')
		}
		lg = strconv.AppendInt(append(lg, `"offset":`...), p.Offset, 10)
	}
	if len(lg) > 0 {
		m = append(m, member{"log", append(lg, '}')})
	}
	if l.dataStream {
		if t, ds, ns, ok := dataStreamParts(string(index)); ok {
			v := event.AppendString(append([]byte(nil), `{"type":`...), t)
			v = event.AppendString(append(v, `,"dataset":`...), ds)
			v = event.AppendString(append(v, `,"namespace":`...), ns)
			m = append(m, member{"data_stream", append(v, '}')})
		}
	}
	return m
}

// dataStreamParts splits a data stream name <type>-<dataset>-<namespace>
// (the dataset has no '-'; the namespace may have none either).
func dataStreamParts(name string) (typ, dataset, namespace string, ok bool) {
	parts := strings.Split(name, "-")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// spliceMembers inserts members at the start of the JSON object at
// dst[doc:].
func spliceMembers(dst []byte, doc int, adds []member) []byte {
	open := doc
	for open < len(dst) && (dst[open] == ' ' || dst[open] == '\t' || dst[open] == '\r') {
		open++
	}
	if open == len(dst) || dst[open] != '{' || len(adds) == 0 {
		return dst
	}
	size := len(adds) + 1
	for _, m := range adds {
		size += len(m.key) + 3 + len(m.val)
	}
	ins := make([]byte, 0, size)
	for i, m := range adds {
		if i > 0 {
			ins = append(ins, ',')
		}
		ins = event.AppendString(ins, m.key)
		ins = append(ins, ':')
		ins = append(ins, m.val...)
	}
	rest := open + 1
	for rest < len(dst) && (dst[rest] == ' ' || dst[rest] == '\t' || dst[rest] == '\r') {
		rest++
	}
	if rest < len(dst) && dst[rest] != '}' {
		ins = append(ins, ',')
	}
	n := len(ins)
	dst = append(dst, ins...)
	copy(dst[open+1+n:], dst[open+1:len(dst)-n])
	copy(dst[open+1:], ins)
	return dst
}

// merge rebuilds the object body with the layout's members merged into
// the record's: the members the record lacks first, then the record's in
// their order (untouched ones byte for byte), ECS objects completed,
// kubernetes rewritten. ok is false when body is not a JSON object.
func (l *ecsLayout) merge(body []byte, e *event.Event, adds []member) ([]byte, bool) {
	members, ok := topMembers(body)
	if !ok {
		return nil, false
	}
	have := map[string]int{}
	for i, m := range members {
		switch k := string(m.key); k {
		case "agent", "host", "log", "data_stream", "kubernetes", "container":
			have[k] = i
		}
	}
	ours := map[string][]byte{}
	for _, m := range adds {
		ours[m.key] = m.val
	}
	// kubernetes: rewritten into the ECS form (from the event's own
	// object when it has one: no decoding); its container fields go to the
	// ECS container object.
	var container map[string]any
	if i, ok := have["kubernetes"]; ok {
		v, _ := e.Known("kubernetes")
		k8s, isObj := v.(map[string]any)
		if !isObj {
			k8s, isObj = decodeObject(members[i].val)
		}
		if isObj {
			var conv map[string]any
			conv, container = ecsKubernetes(k8s)
			members[i].val = event.AppendValue(nil, conv)
		}
	}
	if container != nil {
		if i, ok := have["container"]; ok {
			if c, ok := decodeObject(members[i].val); ok {
				members[i].val = event.AppendValue(nil, mergeAbsent(c, container))
			}
		} else {
			adds = append(adds, member{"container", event.AppendValue(nil, container)})
		}
	}
	for key, val := range ours {
		i, ok := have[key]
		if !ok {
			continue
		}
		cur, isObj := decodeObject(members[i].val)
		add, _ := decodeObject(val)
		switch {
		case key == "data_stream":
			// must match the name: ours win
			if isObj {
				for k, v := range add {
					cur[k] = v
				}
				members[i].val = event.AppendValue(nil, cur)
			} else {
				members[i].val = val
			}
		case isObj:
			members[i].val = event.AppendValue(nil, mergeAbsent(cur, add))
		}
	}

	out := make([]byte, 0, len(body)+256)
	out = append(out, '{')
	n := 0
	for _, m := range adds {
		if _, ok := have[m.key]; ok {
			continue
		}
		if n > 0 {
			out = append(out, ',')
		}
		out = append(event.AppendString(out, m.key), ':')
		out = append(out, m.val...)
		n++
	}
	for _, m := range members {
		if n > 0 {
			out = append(out, ',')
		}
		out = append(out, '"')
		out = append(out, m.key...)
		out = append(out, '"', ':')
		out = append(out, m.val...)
		n++
	}
	return append(out, '}'), true
}

// rawMember is a top-level member of a JSON object: its key as written
// between the quotes, and its value's bytes.
type rawMember struct{ key, val []byte }

// topMembers splits a JSON object into its top-level members without
// decoding them. ok is false when b is not one well-formed object.
func topMembers(b []byte) (ms []rawMember, ok bool) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil, skipWS(b, i+1) == len(b)
	}
	for i < len(b) {
		if b[i] != '"' {
			return nil, false
		}
		ke := strEnd(b, i)
		if ke < 0 {
			return nil, false
		}
		key := b[i+1 : ke-1]
		i = skipWS(b, ke)
		if i >= len(b) || b[i] != ':' {
			return nil, false
		}
		vs := skipWS(b, i+1)
		ve := valEnd(b, vs)
		if ve < 0 {
			return nil, false
		}
		ms = append(ms, rawMember{key, b[vs:ve]})
		i = skipWS(b, ve)
		if i >= len(b) {
			return nil, false
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return ms, skipWS(b, i+1) == len(b)
		default:
			return nil, false
		}
	}
	return nil, false
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// strEnd returns the index just past the string starting at b[i] ('"'),
// or -1.
func strEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// valEnd returns the index just past the value starting at b[i], or -1.
func valEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return strEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				e := strEnd(b, j)
				if e < 0 {
					return -1
				}
				j = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) && !bytes.ContainsRune([]byte(",}] \t\r\n"), rune(b[j])) {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

func decodeObject(raw []byte) (map[string]any, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, false
	}
	return m, true
}

// mergeAbsent adds to cur the members of add it lacks, recursively into
// objects both have.
func mergeAbsent(cur, add map[string]any) map[string]any {
	for k, v := range add {
		c, ok := cur[k]
		if !ok {
			cur[k] = v
			continue
		}
		cm, ok1 := c.(map[string]any)
		am, ok2 := v.(map[string]any)
		if ok1 && ok2 {
			cur[k] = mergeAbsent(cm, am)
		}
	}
	return cur
}

// ownerKinds are the controllers Elastic's integrations name as
// kubernetes.<kind>.name.
var ownerKinds = map[string]string{
	"ReplicaSet": "replicaset", "Deployment": "deployment", "StatefulSet": "statefulset",
	"DaemonSet": "daemonset", "Job": "job", "CronJob": "cronjob",
}

// ecsKubernetes converts the kubernetes filter's object into the form of
// Elastic's Kubernetes integration: pod → pod.name, pod_uid → pod.uid,
// pod_ip → pod.ip, node → node.name, container → container.name, owner
// {kind, name} → <kind>.name (replicaset, deployment, ...; other kinds stay
// as owner); namespace and namespace_labels keep their names. Labels,
// annotations and namespace labels are de-dotted (app.kubernetes.io/name →
// app_kubernetes_io/name), as Elastic's integration does, so that labels
// "app" and "app.kubernetes.io/name" do not collide in the mapping. The
// container's id and image go to the ECS container object (container.id,
// container.image.name), returned apart (nil when neither is known). Other
// keys are kept as they are.
func ecsKubernetes(k map[string]any) (out, container map[string]any) {
	out = map[string]any{}
	obj := func(key string) map[string]any {
		m, _ := out[key].(map[string]any)
		if m == nil {
			m = map[string]any{}
			out[key] = m
		}
		return m
	}
	keys := make([]string, 0, len(k))
	for key := range k {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		v := k[key]
		switch key {
		case "pod":
			obj("pod")["name"] = v
		case "pod_uid":
			obj("pod")["uid"] = v
		case "pod_ip":
			obj("pod")["ip"] = v
		case "node":
			obj("node")["name"] = v
		case "container":
			obj("container")["name"] = v
		case "container_id":
			if container == nil {
				container = map[string]any{}
			}
			container["id"] = v
		case "image":
			if container == nil {
				container = map[string]any{}
			}
			container["image"] = map[string]any{"name": v}
		case "labels", "annotations", "namespace_labels":
			if m, ok := v.(map[string]any); ok {
				d := make(map[string]any, len(m))
				for lk, lv := range m {
					d[strings.ReplaceAll(lk, ".", "_")] = lv
				}
				v = d
			}
			out[key] = v
		case "owner":
			m, _ := v.(map[string]any)
			kind, _ := m["kind"].(string)
			if short, ok := ownerKinds[kind]; ok {
				obj(short)["name"] = m["name"]
			} else {
				out[key] = v
			}
		default:
			if cur, ok := out[key].(map[string]any); ok {
				if vm, ok := v.(map[string]any); ok {
					out[key] = mergeAbsent(cur, vm)
					continue
				}
			}
			out[key] = v
		}
	}
	return out, container
}
