package test

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/prometheus/promql/parser"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// render renders the chart with values (YAML, merged over values.yaml) and
// decodes every object strictly into its Kubernetes or prometheus-operator
// type, refusing unknown fields.
func render(t *testing.T, values string) []any {
	t.Helper()
	chrt, err := loader.Load("../sidelog")
	if err != nil {
		t.Fatal(err)
	}
	vals, err := common.ReadValues([]byte(values))
	if err != nil {
		t.Fatal(err)
	}
	rv, err := util.ToRenderValues(chrt, vals, common.ReleaseOptions{Name: "sidelog", Namespace: "logging", IsInstall: true}, common.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	files, err := engine.Render(chrt, rv)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var objs []any
	for _, n := range names {
		if filepath.Ext(n) != ".yaml" {
			continue
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(files[n], -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s doc %d: %v", n, i, err)
			}
			var obj any
			switch tm.APIVersion + "/" + tm.Kind {
			case "v1/ServiceAccount":
				obj = &corev1.ServiceAccount{}
			case "v1/ConfigMap":
				obj = &corev1.ConfigMap{}
			case "v1/Service":
				obj = &corev1.Service{}
			case "apps/v1/DaemonSet":
				obj = &appsv1.DaemonSet{}
			case "apps/v1/Deployment":
				obj = &appsv1.Deployment{}
			case "rbac.authorization.k8s.io/v1/ClusterRole":
				obj = &rbacv1.ClusterRole{}
			case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
				obj = &rbacv1.ClusterRoleBinding{}
			case "monitoring.coreos.com/v1/ServiceMonitor":
				obj = &monitoringv1.ServiceMonitor{}
			case "monitoring.coreos.com/v1/PrometheusRule":
				obj = &monitoringv1.PrometheusRule{}
			default:
				t.Fatalf("%s doc %d: unexpected kind %s/%s: add it to the test", n, i, tm.APIVersion, tm.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s doc %d (%s): %v\n%s", n, i, tm.Kind, err, doc)
			}
			objs = append(objs, obj)
		}
	}
	return objs
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func find[T any](objs []any) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// The strict decoding does refuse a misspelt field.
func TestStrictDecodingRefusesTypos(t *testing.T) {
	bad := "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec: {endpoints: [{prot: http}]}\n"
	if err := yaml.UnmarshalStrict([]byte(bad), &monitoringv1.ServiceMonitor{}); err == nil {
		t.Fatal("a misspelt ServiceMonitor field was accepted")
	}
}

var exactRules = []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods", "namespaces"}, Verbs: []string{"get", "list", "watch"}}}

// checkPod is what every rendering's agent pod must get right.
func checkPod(t *testing.T, kind string, spec corev1.PodSpec, daemon bool) {
	t.Helper()
	if len(spec.Containers) != 1 {
		t.Fatalf("%s: %d containers", kind, len(spec.Containers))
	}
	c := spec.Containers[0]
	token := spec.AutomountServiceAccountToken != nil && *spec.AutomountServiceAccountToken
	if token != daemon {
		t.Errorf("%s: automountServiceAccountToken %v: the token belongs to the DaemonSet only", kind, token)
	}
	node := false
	for _, e := range c.Env {
		if e.Name == "NODE_NAME" {
			node = e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" && e.Value == ""
		}
	}
	if !node {
		t.Errorf("%s: NODE_NAME must come from a fieldRef on spec.nodeName", kind)
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	if daemon {
		for _, p := range []string{"/var/log/pods", "/var/log/containers"} {
			if m, ok := mounts[p]; !ok || !m.ReadOnly {
				t.Errorf("%s: %s must be mounted read-only", kind, p)
			}
		}
	} else if _, ok := mounts["/var/log/pods"]; ok {
		t.Errorf("%s: a Deployment mounts no node logs", kind)
	}
	if m, ok := mounts["/etc/sidelog"]; !ok || !m.ReadOnly {
		t.Errorf("%s: the config must be mounted read-only", kind)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("%s: container securityContext %+v", kind, sc)
	}
	if spec.SecurityContext == nil || spec.SecurityContext.SeccompProfile == nil || spec.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: seccompProfile RuntimeDefault missing", kind)
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Errorf("%s: no memory limit", kind)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("%s: probes", kind)
	}
}

func TestDefaultValues(t *testing.T) {
	objs := render(t, "")
	ds := find[*appsv1.DaemonSet](objs)
	if len(ds) != 1 || len(find[*appsv1.Deployment](objs)) != 0 {
		t.Fatalf("default: %d DaemonSets", len(ds))
	}
	spec := ds[0].Spec.Template.Spec
	checkPod(t, "DaemonSet", spec, true)
	roles := find[*rbacv1.ClusterRole](objs)
	if len(roles) != 1 || !reflect.DeepEqual(roles[0].Rules, exactRules) {
		t.Fatalf("ClusterRole rules: %+v", roles)
	}
	b := find[*rbacv1.ClusterRoleBinding](objs)
	sa := find[*corev1.ServiceAccount](objs)
	if len(b) != 1 || len(sa) != 1 || b[0].RoleRef.Name != roles[0].Name || b[0].Subjects[0].Name != sa[0].Name ||
		b[0].Subjects[0].Namespace != "logging" || spec.ServiceAccountName != sa[0].Name {
		t.Fatalf("binding %+v, service account %+v", b, sa)
	}
	if sa[0].AutomountServiceAccountToken == nil || *sa[0].AutomountServiceAccountToken {
		t.Error("the ServiceAccount mounts a token by default")
	}
	for _, v := range spec.Volumes {
		if v.Name == "data" && (v.HostPath == nil || v.HostPath.Path != "/var/lib/sidelog") {
			t.Errorf("data_dir must be a hostPath: %+v", v)
		}
	}
	if spec.PriorityClassName != "system-node-critical" || len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists {
		t.Errorf("priority class %q, tolerations %+v", spec.PriorityClassName, spec.Tolerations)
	}
	// The config is the values' config, with the kubernetes filter's api on
	// for NODE_NAME.
	cms := find[*corev1.ConfigMap](objs)
	if len(cms) != 1 {
		t.Fatal("no ConfigMap")
	}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(cms[0].Data["sidelog.yaml"]), &cfg); err != nil {
		t.Fatal(err)
	}
	f := cfg["filters"].([]any)[0].(map[string]any)
	if f["type"] != "kubernetes" || f["api"].(map[string]any)["node_name"] != "${NODE_NAME}" {
		t.Errorf("config filters %v", cfg["filters"])
	}
	if len(find[*monitoringv1.ServiceMonitor](objs))+len(find[*monitoringv1.PrometheusRule](objs)) != 0 {
		t.Error("ServiceMonitor/PrometheusRule rendered without being enabled")
	}
}

func TestMonitoringValues(t *testing.T) {
	objs := render(t, `
serviceMonitor: {enabled: true, interval: 15s, labels: {release: prom}}
prometheusRule: {enabled: true, labels: {release: prom}}
priorityClassName: logging-critical
tolerations: [{key: dedicated, operator: Equal, value: logs, effect: NoSchedule}]
resources: {requests: {cpu: 200m, memory: 128Mi}, limits: {memory: 512Mi}}
env:
  - name: ES_PASSWORD
    valueFrom: {secretKeyRef: {name: es, key: password}}
`)
	ds := find[*appsv1.DaemonSet](objs)
	if len(ds) != 1 {
		t.Fatal("no DaemonSet")
	}
	spec := ds[0].Spec.Template.Spec
	checkPod(t, "DaemonSet", spec, true)
	if spec.PriorityClassName != "logging-critical" || len(spec.Tolerations) != 1 || spec.Tolerations[0].Key != "dedicated" {
		t.Errorf("values not applied: %q %+v", spec.PriorityClassName, spec.Tolerations)
	}
	if got := spec.Containers[0].Resources.Limits.Memory().String(); got != "512Mi" {
		t.Errorf("memory limit %s", got)
	}
	sms := find[*monitoringv1.ServiceMonitor](objs)
	svcs := find[*corev1.Service](objs)
	if len(sms) != 1 || len(svcs) != 1 || sms[0].Spec.Endpoints[0].Port != svcs[0].Spec.Ports[0].Name ||
		!reflect.DeepEqual(sms[0].Spec.Selector.MatchLabels, svcs[0].Spec.Selector) || sms[0].Labels["release"] != "prom" {
		t.Fatalf("ServiceMonitor %+v does not select the Service %+v", sms, svcs)
	}
	rules := find[*monitoringv1.PrometheusRule](objs)
	if len(rules) != 1 {
		t.Fatal("no PrometheusRule")
	}
	exported := exportedMetrics(t)
	alerts := 0
	for _, g := range rules[0].Spec.Groups {
		for _, r := range g.Rules {
			alerts++
			expr, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr.String())
			if err != nil {
				t.Errorf("alert %s: %q: %v", r.Alert, r.Expr.String(), err)
				continue
			}
			names := 0
			parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok {
					names++
					if !exported[vs.Name] {
						t.Errorf("alert %s names %s, which the agent does not export", r.Alert, vs.Name)
					}
				}
				return nil
			})
			if names == 0 {
				t.Errorf("alert %s names no metric", r.Alert)
			}
		}
	}
	if want := operationsAlerts(t); alerts != len(want) {
		t.Errorf("%d alerts, docs/operations.md has %d (%v)", alerts, len(want), want)
	}
}

func TestDeploymentValues(t *testing.T) {
	objs := render(t, "kind: Deployment\nreplicas: 2\nconfig: {inputs: [], filters: [], outputs: []}\n")
	if len(find[*appsv1.DaemonSet](objs)) != 0 {
		t.Fatal("a DaemonSet with kind: Deployment")
	}
	d := find[*appsv1.Deployment](objs)
	if len(d) != 1 || *d[0].Spec.Replicas != 2 {
		t.Fatalf("deployments %+v", d)
	}
	checkPod(t, "Deployment", d[0].Spec.Template.Spec, false)
	if len(find[*rbacv1.ClusterRole](objs)) != 0 {
		t.Error("RBAC for a Deployment that reads no API")
	}
	// An unknown kind is refused at render time.
	chrt, _ := loader.Load("../sidelog")
	vals, _ := common.ReadValues([]byte("kind: StatefulSet\n"))
	rv, _ := util.ToRenderValues(chrt, vals, common.ReleaseOptions{Name: "sidelog", Namespace: "logging"}, common.DefaultCapabilities)
	if _, err := engine.Render(chrt, rv); err == nil || !strings.Contains(err.Error(), "kind must be") {
		t.Errorf("kind: StatefulSet rendered: %v", err)
	}
}

// exportedMetrics reads the metric names the agent registers from its own
// source (the metrics and api packages), plus the Go client's process
// collector's names.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{
		"process_resident_memory_bytes": true, "process_cpu_seconds_total": true, "process_open_fds": true,
		"process_max_fds": true, "process_virtual_memory_bytes": true, "process_start_time_seconds": true,
	}
	re := regexp.MustCompile(`"(sidelog_[a-z_]+)"`)
	for _, dir := range []string{"../../../metrics", "../../../api"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range re.FindAllStringSubmatch(string(b), -1) {
				out[m[1]] = true
			}
		}
	}
	if len(out) < 30 {
		t.Fatalf("only %d metric names found in the agent's source", len(out))
	}
	return out
}

// operationsAlerts lists the alerts of docs/operations.md.
func operationsAlerts(t *testing.T) []string {
	b, err := os.ReadFile("../../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile(`(?m)^\s*- alert: (\w+)`).FindAllStringSubmatch(string(b), -1) {
		out = append(out, m[1])
	}
	return out
}
