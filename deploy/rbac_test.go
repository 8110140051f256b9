package deploy_test

import (
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// The DaemonSet's access to the API server is exactly what the kubernetes
// filter uses, its token is mounted for its own pod only, and every pod
// runs under the runtime's default seccomp profile.
func TestDaemonSetAPIAccess(t *testing.T) {
	ms := decodeStrict(t, "daemonset/daemonset.yaml")
	var role *rbacv1.ClusterRole
	var binding *rbacv1.ClusterRoleBinding
	var sa *corev1.ServiceAccount
	var ns *corev1.Namespace
	var ds *appsv1.DaemonSet
	for _, m := range ms {
		switch o := m.obj.(type) {
		case *rbacv1.ClusterRole:
			role = o
		case *rbacv1.ClusterRoleBinding:
			binding = o
		case *corev1.ServiceAccount:
			sa = o
		case *corev1.Namespace:
			ns = o
		case *appsv1.DaemonSet:
			ds = o
		}
	}
	if role == nil || binding == nil || sa == nil || ns == nil || ds == nil {
		t.Fatalf("daemonset.yaml needs a Namespace, ServiceAccount, ClusterRole, ClusterRoleBinding and DaemonSet")
	}
	want := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods", "namespaces"}, Verbs: []string{"get", "list", "watch"}}}
	if !reflect.DeepEqual(role.Rules, want) {
		t.Errorf("ClusterRole rules %+v, want exactly %+v", role.Rules, want)
	}
	if binding.RoleRef.Kind != "ClusterRole" || binding.RoleRef.Name != role.Name || len(binding.Subjects) != 1 ||
		binding.Subjects[0].Kind != "ServiceAccount" || binding.Subjects[0].Name != sa.Name || binding.Subjects[0].Namespace != sa.Namespace {
		t.Errorf("ClusterRoleBinding %+v does not bind %s to %s/%s", binding, role.Name, sa.Namespace, sa.Name)
	}
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Error("the ServiceAccount must not mount its token by default")
	}
	spec := ds.Spec.Template.Spec
	if spec.ServiceAccountName != sa.Name || spec.AutomountServiceAccountToken == nil || !*spec.AutomountServiceAccountToken {
		t.Error("the DaemonSet's pod mounts the token of the sidelog ServiceAccount")
	}
	if spec.SecurityContext == nil || spec.SecurityContext.SeccompProfile == nil || spec.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("the DaemonSet needs seccompProfile RuntimeDefault")
	}
	if ns.Name != ds.Namespace || ns.Labels["pod-security.kubernetes.io/enforce"] == "" || ns.Labels["pod-security.kubernetes.io/warn"] != "restricted" {
		t.Errorf("namespace %s: Pod Security labels %v", ns.Name, ns.Labels)
	}
	// The config's kubernetes filter has the API on, for this node.
	cms := map[string]*corev1.ConfigMap{}
	for _, m := range ms {
		if cm, ok := m.obj.(*corev1.ConfigMap); ok {
			cms[cm.Name] = cm
		}
	}
	cfg := configOf(t, "daemonset", spec, cms)
	api := false
	for _, f := range cfg.Filters {
		if f.Type == "kubernetes" {
			api = reflect.ValueOf(f.Plugin).Elem().FieldByName("API").Elem().FieldByName("NodeName").String() != ""
		}
	}
	if !api {
		t.Error("the DaemonSet's kubernetes filter must read the API server for its node")
	}

	// The sidecars mount no token and run under RuntimeDefault too.
	for _, f := range []string{"sidecar/deployment.yaml", "sidecar/deployment-classic.yaml"} {
		for _, m := range decodeStrict(t, f) {
			d, ok := m.obj.(*appsv1.Deployment)
			if !ok {
				continue
			}
			s := d.Spec.Template.Spec
			if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
				t.Errorf("%s: a sidecar pod must not mount a service account token", f)
			}
			if s.SecurityContext == nil || s.SecurityContext.SeccompProfile == nil || s.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s: seccompProfile RuntimeDefault missing", f)
			}
		}
	}
}
