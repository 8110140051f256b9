package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/plugins"
	_ "github.com/sidelog/sidelog/plugins/all"
)

// manifest is one decoded document of a manifest file.
type manifest struct {
	file string
	obj  any
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeStrict decodes every document of every manifest with the Kubernetes
// types, refusing unknown fields, so that a typo ("readOnly: ture",
// "mountpath") fails here and not at `kubectl apply`.
func decodeStrict(t *testing.T, path string) []manifest {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []manifest
	for i, doc := range docSep.Split(string(data), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("%s doc %d: %v", path, i, err)
		}
		var obj any
		switch tm.APIVersion + "/" + tm.Kind {
		case "v1/Namespace":
			obj = &corev1.Namespace{}
		case "v1/ServiceAccount":
			obj = &corev1.ServiceAccount{}
		case "v1/ConfigMap":
			obj = &corev1.ConfigMap{}
		case "v1/Secret":
			obj = &corev1.Secret{}
		case "apps/v1/Deployment":
			obj = &appsv1.Deployment{}
		case "apps/v1/DaemonSet":
			obj = &appsv1.DaemonSet{}
		case "rbac.authorization.k8s.io/v1/ClusterRole":
			obj = &rbacv1.ClusterRole{}
		case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
			obj = &rbacv1.ClusterRoleBinding{}
		default:
			t.Fatalf("%s doc %d: unexpected kind %s/%s: add it to the test", path, i, tm.APIVersion, tm.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Errorf("%s doc %d (%s): %v", path, i, tm.Kind, err)
			continue
		}
		out = append(out, manifest{file: path, obj: obj})
	}
	return out
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

func manifestFiles(t *testing.T) []string {
	files, err := filepath.Glob("*/*.yaml")
	if err != nil || len(files) < 4 {
		t.Fatalf("manifests: %v %v", files, err)
	}
	return files
}

// The strict decoder does refuse a typo: the test would be worthless if it
// did not.
func TestStrictDecodingRefusesTypos(t *testing.T) {
	bad := `apiVersion: v1
kind: ConfigMap
metadata:
  name: x
  lables: {a: b}
`
	if err := yaml.UnmarshalStrict([]byte(bad), &corev1.ConfigMap{}); err == nil || !strings.Contains(err.Error(), "lables") {
		t.Fatalf("a misspelt field was accepted: %v", err)
	}
	badType := strings.Replace(string(mustRead(t, "sidecar/deployment.yaml")), "readOnly: true", "readOnly: ture", 1)
	if err := yaml.UnmarshalStrict([]byte(stripComments(badType)), &appsv1.Deployment{}); err == nil {
		t.Fatal("readOnly: ture was accepted")
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// loadConfig loads the sidelog config of a ConfigMap with the agent's own
// loader, with the environment the pod gives it.
func loadConfig(t *testing.T, cm *corev1.ConfigMap) *config.Config {
	t.Helper()
	data, ok := cm.Data["sidelog.yaml"]
	if !ok {
		t.Fatalf("ConfigMap %s has no sidelog.yaml", cm.Name)
	}
	t.Setenv("ES_URL", "https://elasticsearch.logging.svc:9200")
	t.Setenv("ES_PASSWORD", "s3cret-password")
	t.Setenv("NODE_NAME", "node-1")
	cfg, err := config.Parse(cm.Name+"/sidelog.yaml", []byte(data), plugins.Default)
	if err != nil {
		t.Fatalf("ConfigMap %s: the embedded sidelog config does not load:\n%v", cm.Name, err)
	}
	if cfg.API.Address != "0.0.0.0:2020" {
		t.Errorf("ConfigMap %s: api.address = %q: kubelet probes and Prometheus need 0.0.0.0:2020", cm.Name, cfg.API.Address)
	}
	if cfg.API.Tap || cfg.API.Pprof {
		t.Errorf("ConfigMap %s: tap and pprof stay off in the examples", cm.Name)
	}
	return cfg
}

// podCheck is what every pod running sidelog must get right.
func podCheck(t *testing.T, where string, tmpl corev1.PodTemplateSpec, c corev1.Container, cfg *config.Config) {
	t.Helper()
	fail := func(format string, args ...any) { t.Errorf("%s: "+format, append([]any{where}, args...)...) }
	a := tmpl.Annotations
	if a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != "2020" || a["prometheus.io/path"] != "/metrics" {
		fail("Prometheus scrape annotations missing or wrong: %v", a)
	}
	grace := time.Duration(30) * time.Second
	if g := tmpl.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if grace <= cfg.ShutdownTimeout {
		fail("terminationGracePeriodSeconds %v must be above shutdown_timeout %v", grace, cfg.ShutdownTimeout)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		fail("readiness probe must GET /readyz")
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		fail("liveness probe must GET /healthz")
	}
	port := false
	for _, p := range c.Ports {
		port = port || p.ContainerPort == 2020
	}
	if !port {
		fail("container port 2020 not declared")
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[res]; !ok {
			fail("no %s request", res)
		}
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		fail("no memory limit")
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		fail("the root filesystem must be read-only")
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		fail("allowPrivilegeEscalation must be false")
	}
	if sc == nil || sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		fail("every capability must be dropped")
	}
	// data_dir is a mounted volume (the only place the agent writes), and
	// the config comes from the ConfigMap.
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	if _, ok := mounts[cfg.DataDir]; !ok {
		fail("data_dir %s is not a mounted volume: with a read-only root filesystem the agent cannot write it", cfg.DataDir)
	}
	if m, ok := mounts["/etc/sidelog"]; !ok || !m.ReadOnly {
		fail("the config must be mounted read-only at /etc/sidelog")
	}
	// --watch-config: a ConfigMap change is applied without a signal
	// (kubectl debug ... kill -HUP 1 cannot signal a runAsNonRoot agent).
	if strings.Join(c.Args, " ") != "run -c /etc/sidelog/sidelog.yaml --watch-config" {
		fail("args = %v", c.Args)
	}
	// Secrets come from Secrets, never literal values.
	for _, e := range c.Env {
		if strings.Contains(e.Name, "PASSWORD") || strings.Contains(e.Name, "API_KEY") || strings.Contains(e.Name, "TOKEN") {
			if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				fail("env %s must come from a Secret", e.Name)
			}
		}
	}
}

func volume(spec corev1.PodSpec, name string) *corev1.Volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

func mountAt(c corev1.Container, path string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].MountPath == path {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func TestManifests(t *testing.T) {
	byDir := map[string][]manifest{}
	for _, f := range manifestFiles(t) {
		byDir[filepath.Dir(f)] = append(byDir[filepath.Dir(f)], decodeStrict(t, f)...)
	}
	if t.Failed() {
		t.FailNow()
	}
	for _, dir := range []string{"sidecar", "daemonset"} {
		ms := byDir[dir]
		cms := map[string]*corev1.ConfigMap{}
		for _, m := range ms {
			if cm, ok := m.obj.(*corev1.ConfigMap); ok {
				cms[cm.Name] = cm
			}
		}
		if len(cms) == 0 {
			t.Fatalf("%s: no ConfigMap", dir)
		}
		pods := 0
		for _, m := range ms {
			switch o := m.obj.(type) {
			case *appsv1.Deployment:
				pods++
				checkSidecar(t, m.file, o, cms)
			case *appsv1.DaemonSet:
				pods++
				checkDaemonSet(t, m.file, o, cms)
			}
		}
		if pods == 0 {
			t.Fatalf("%s: no workload", dir)
		}
	}
}

func configOf(t *testing.T, where string, spec corev1.PodSpec, cms map[string]*corev1.ConfigMap) *config.Config {
	t.Helper()
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil {
			cm, ok := cms[v.ConfigMap.Name]
			if !ok {
				t.Fatalf("%s: volume %s names ConfigMap %s, which is not in the folder", where, v.Name, v.ConfigMap.Name)
			}
			return loadConfig(t, cm)
		}
	}
	t.Fatalf("%s: no ConfigMap volume", where)
	return nil
}

func checkSidecar(t *testing.T, file string, d *appsv1.Deployment, cms map[string]*corev1.ConfigMap) {
	where := file + ": " + d.Name
	spec := d.Spec.Template.Spec
	cfg := configOf(t, where, spec, cms)
	var agent *corev1.Container
	native := false
	for i, c := range spec.InitContainers {
		if c.Name == "sidelog" {
			agent = &spec.InitContainers[i]
			native = true
			if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
				t.Errorf("%s: the native sidecar needs restartPolicy: Always", where)
			}
		}
	}
	for i, c := range spec.Containers {
		if c.Name == "sidelog" {
			agent = &spec.Containers[i]
		}
	}
	if agent == nil {
		t.Fatalf("%s: no sidelog container", where)
	}
	if strings.HasSuffix(file, "deployment.yaml") && !native {
		t.Errorf("%s: deployment.yaml is the native-sidecar variant", where)
	}
	podCheck(t, where, d.Spec.Template, *agent, cfg)

	// The data volume is an emptyDir whose sizeLimit is above what the
	// disk buffers and dead-letter files may hold.
	m := mountAt(*agent, cfg.DataDir)
	if m == nil {
		return
	}
	v := volume(spec, m.Name)
	if v == nil || v.EmptyDir == nil || v.EmptyDir.SizeLimit == nil {
		t.Fatalf("%s: data_dir must be an emptyDir with a sizeLimit", where)
	}
	var need int64
	for _, o := range cfg.Outputs {
		if o.Buffer.Type == "disk" || o.Buffer.Type == "" && o.Type != "stdout" && o.Type != "file" {
			need += int64(o.Buffer.MaxBytes) + int64(cfg.DeadLetter.MaxBytes)
		}
	}
	if limit := v.EmptyDir.SizeLimit.Value(); limit <= need {
		t.Errorf("%s: emptyDir sizeLimit %s must be above buffer + dead-letter limits (%s)", where, v.EmptyDir.SizeLimit, resource.NewQuantity(need, resource.BinarySI))
	}
	// The application's log volume is shared, read-only for the agent, and
	// holds what the input reads.
	shared := false
	for _, c := range spec.Containers {
		if c.Name == "sidelog" {
			continue
		}
		for _, am := range c.VolumeMounts {
			if sm := mountAt(*agent, am.MountPath); sm != nil && sm.Name == am.Name {
				shared = true
				if !sm.ReadOnly {
					t.Errorf("%s: the agent mounts the application's logs read-write", where)
				}
			}
		}
	}
	if !shared {
		t.Errorf("%s: the application and sidelog share no log volume", where)
	}
}

func checkDaemonSet(t *testing.T, file string, d *appsv1.DaemonSet, cms map[string]*corev1.ConfigMap) {
	where := file + ": " + d.Name
	spec := d.Spec.Template.Spec
	cfg := configOf(t, where, spec, cms)
	if len(spec.Containers) != 1 {
		t.Fatalf("%s: one container expected", where)
	}
	c := spec.Containers[0]
	podCheck(t, where, d.Spec.Template, c, cfg)
	for _, p := range []string{"/var/log/pods", "/var/log/containers"} {
		m := mountAt(c, p)
		if m == nil || !m.ReadOnly {
			t.Errorf("%s: %s must be mounted read-only", where, p)
			continue
		}
		if v := volume(spec, m.Name); v == nil || v.HostPath == nil || v.HostPath.Path != p {
			t.Errorf("%s: %s must be the host's", where, p)
		}
	}
	if m := mountAt(c, cfg.DataDir); m != nil {
		if v := volume(spec, m.Name); v == nil || v.HostPath == nil {
			t.Errorf("%s: data_dir must be a hostPath (buffers and checkpoints outlive the pod)", where)
		}
	}
	node := false
	for _, e := range c.Env {
		if e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
			node = true
		}
	}
	if !node {
		t.Errorf("%s: NODE_NAME must come from the downward API (spec.nodeName)", where)
	}
	if len(cfg.Inputs) == 0 || cfg.Inputs[0].Parser.Parser != "cri" {
		t.Errorf("%s: the DaemonSet reads container logs with the cri parser", where)
	}
	k8s := false
	for _, f := range cfg.Filters {
		k8s = k8s || f.Type == "kubernetes"
	}
	if !k8s {
		t.Errorf("%s: the DaemonSet needs the kubernetes filter", where)
	}
	if sc := c.SecurityContext; sc == nil || sc.RunAsUser == nil || (*sc.RunAsUser != 0 && len(spec.SecurityContext.SupplementalGroups) == 0) {
		t.Errorf("%s: run as root or with the group that reads /var/log/pods", where)
	}
}

// The Dockerfile builds a static, stripped, stamped binary with
// scripts/build.sh and runs it as a non-root user on a distroless base.
func TestDockerfile(t *testing.T) {
	build := string(mustRead(t, "../scripts/build.sh"))
	for _, want := range []string{
		"CGO_ENABLED=0",
		"-trimpath",
		`ldflags="-s -w -X main.version=${VERSION} -X main.commit=${COMMIT} -X main.date=${DATE}"`,
		`-ldflags "$ldflags"`,
		"./cmd/sidelog",
		`PLATFORMS=${PLATFORMS:-"linux/amd64 linux/arm64"}`,
	} {
		if !strings.Contains(build, want) {
			t.Errorf("scripts/build.sh lacks %q", want)
		}
	}
	df := string(mustRead(t, "../Dockerfile"))
	for _, want := range []string{
		`VERSION="${VERSION}" COMMIT="${COMMIT}" DATE="${DATE}" PLATFORMS="${TARGETOS}/${TARGETARCH}"`,
		"bash scripts/build.sh /out",
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"USER 65532:65532",
		`ENTRYPOINT ["/usr/local/bin/sidelog"]`,
		"--chown=65532:65532 --chmod=0700",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	froms := regexp.MustCompile(`(?m)^FROM `).FindAllStringIndex(df, -1)
	if len(froms) != 2 {
		t.Errorf("Dockerfile: %d stages, want a build stage and a runtime stage", len(froms))
	}
	if m := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindStringSubmatch(df); m == nil || strings.HasPrefix(m[1], "0") || strings.HasPrefix(m[1], "root") {
		t.Errorf("Dockerfile: the runtime user must not be root")
	}
	// -X main.version, main.commit, main.date must name variables that
	// exist (cmd/sidelog's TestVersionStamped builds with them and checks
	// `sidelog version`).
	vgo := string(mustRead(t, "../cmd/sidelog/version.go"))
	for _, v := range []string{"version", "commit", "date"} {
		if !regexp.MustCompile(`(?m)^\s+` + v + `\s+= "`).MatchString(vgo) {
			t.Errorf("cmd/sidelog has no string var %s: -X main.%s sets nothing", v, v)
		}
	}
	// The Go version of the build image is at least go.mod's.
	gomod := string(mustRead(t, "../go.mod"))
	gv := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)
	av := regexp.MustCompile(`ARG GO_VERSION=(\d+\.\d+)`).FindStringSubmatch(df)
	if gv == nil || av == nil || gv[1] != av[1] {
		t.Errorf("Dockerfile GO_VERSION %v does not match go.mod's go %v", av, gv)
	}
}

// The deploy guide shows the manifests that exist.
func TestDeployDocNamesTheManifests(t *testing.T) {
	doc := string(mustRead(t, "../docs/deploy.md"))
	for _, f := range manifestFiles(t) {
		if !strings.Contains(doc, "deploy/"+f) {
			t.Errorf("docs/deploy.md does not mention deploy/%s", f)
		}
	}
}

// .dockerignore leaves out nothing that `go build ./cmd/sidelog` needs:
// every Go and embedded file of every package of the module it builds.
func TestDockerignoreKeepsTheBuildInputs(t *testing.T) {
	var patterns []string
	for _, l := range strings.Split(string(mustRead(t, "../.dockerignore")), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, l)
		}
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-deps", "-tags", "", "-f",
		`{{if not .Standard}}{{.Dir}}|{{join .GoFiles ","}},{{join .EmbedFiles ","}}{{end}}`, "./cmd/sidelog")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		dir, files, _ := strings.Cut(line, "|")
		rel, err := filepath.Rel(root, dir)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // a dependency from the module cache
		}
		for _, f := range strings.Split(files, ",") {
			if f == "" {
				continue
			}
			p := filepath.ToSlash(filepath.Join(rel, f))
			checked++
			for _, pat := range patterns {
				if ignored(pat, p) {
					t.Errorf(".dockerignore pattern %q leaves out %s, which the build needs", pat, p)
				}
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d files checked: go list output not understood", checked)
	}
	for _, must := range []string{"go.mod", "go.sum"} {
		for _, pat := range patterns {
			if ignored(pat, must) {
				t.Errorf(".dockerignore leaves out %s", must)
			}
		}
	}
}

// ignored reports whether a .dockerignore pattern excludes path p: the
// pattern matches p or one of its parent directories; a leading **/ matches
// at any depth.
func ignored(pat, p string) bool {
	parts := strings.Split(p, "/")
	for i := 1; i <= len(parts); i++ {
		prefix := strings.Join(parts[:i], "/")
		if ok, _ := filepath.Match(pat, prefix); ok {
			return true
		}
		if rest, ok := strings.CutPrefix(pat, "**/"); ok {
			for j := 0; j < i; j++ {
				if ok, _ := filepath.Match(rest, strings.Join(parts[j:i], "/")); ok {
					return true
				}
			}
		}
	}
	return false
}

func TestIgnoredMatcher(t *testing.T) {
	for _, tc := range []struct {
		pat, p string
		want   bool
	}{
		{"docs", "docs/x.md", true},
		{"**/testdata", "a/b/testdata/x.json", true},
		{"**/*_test.go", "a/b_test.go", true},
		{"**/*_test.go", "a/b.go", false},
		{"*.md", "README.md", true},
		{"*.md", "a/README.md", false},
		{"deploy", "cmd/deploy.go", false},
	} {
		if got := ignored(tc.pat, tc.p); got != tc.want {
			t.Errorf("ignored(%q, %q) = %v", tc.pat, tc.p, got)
		}
	}
}
