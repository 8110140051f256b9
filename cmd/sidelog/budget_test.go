package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// packageBudget is the most packages the agent's import graph
// (`go list -deps ./cmd/sidelog`, the standard library included) may hold.
// Measured on 2026-12-02 (docs/benchmarks.md, "Build"): 362 after the
// Elasticsearch and Datadog outputs left their generated APIs, 494 once the
// kubernetes filter added client-go (rest, tools/cache, tools/clientcmd,
// core/v1: 132 packages), 592 with the AWS SDK's SigV4 signer and standard
// credential chain for auth.aws (config, credentials/stscreds, service/sts
// and what config brings: sso, ssooidc, signin, imds, smithy-go: 97
// packages, 15.6 CPU s of compiles, the largest 109 MB), 616 with the kafka
// output and input (franz-go's kgo, kmsg, kerr, kbin, sasl/plain,
// sasl/scram, with lz4, s2 and pbkdf2: 20 packages, and 4 of sidelog).
//
// Raise it only in the commit that adds the dependency, with the measured
// cold-build cost (wall time and peak memory of `go build ./cmd/sidelog`
// with empty GOCACHE and GOMODCACHE) in the commit message and in
// docs/benchmarks.md.
const packageBudget = 630

// TestPackageBudget keeps a generated API of a whole cloud or cluster from
// entering the build by accident: the root go-elasticsearch client
// (858 packages of typed API) and datadogV2 (one package of 8,500 files)
// once made the first build take minutes and gigabytes.
func TestPackageBudget(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		goCmd = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goCmd, "list", "-deps", ".")
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("go list -deps: %v\n%s", err, msg)
	}
	pkgs := strings.Fields(string(out))
	if len(pkgs) < 100 {
		t.Fatalf("go list -deps listed %d packages: not the agent's graph?\n%s", len(pkgs), out)
	}
	t.Logf("%d packages (budget %d)", len(pkgs), packageBudget)
	if len(pkgs) > packageBudget {
		byModule := map[string]int{}
		for _, p := range pkgs {
			parts := strings.Split(p, "/")
			if len(parts) >= 3 && strings.Contains(parts[0], ".") {
				byModule[strings.Join(parts[:3], "/")]++
			}
		}
		var top []string
		for m, n := range byModule {
			if n >= 20 {
				top = append(top, m+": "+strconv.Itoa(n))
			}
		}
		sort.Strings(top)
		t.Fatalf("the agent imports %d packages, over the build budget of %d.\n"+
			"Every package adds to the cold build (a newcomer's first `go run ./cmd/sidelog run`) and to CI.\n"+
			"Import the smallest package that does the job (not a client's generated API of a whole cloud or cluster).\n"+
			"If the dependency is worth it, raise packageBudget in cmd/sidelog/budget_test.go in the commit that adds it,\n"+
			"with the measured cold-build cost (empty GOCACHE and GOMODCACHE: wall time, peak memory) in the commit message\n"+
			"and in docs/benchmarks.md (\"Build\").\nPaths with 20 or more packages: %s",
			len(pkgs), packageBudget, strings.Join(top, ", "))
	}
}

// heavyPackages are single packages whose cold compile alone costs more than
// the rest of the agent (measured with -toolexec, docs/benchmarks.md
// "Build"): a package count cannot see them.
var heavyPackages = map[string]string{
	"github.com/elastic/go-elasticsearch/v8/esapi":              "125 CPU s and 1.9 GB to compile; build the request and send it with elastictransport's Perform (output/elasticsearch/perform.go)",
	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV2": "one package of about 8,500 files",
	"github.com/DataDog/datadog-api-client-go/v2/api/datadog":   "imports github.com/DataDog/zstd under cgo (40 C files, 45 s of serial gcc); output/datadog/intake.go builds SubmitLog's request, the tests check it against the client",
	"github.com/elastic/go-elasticsearch/v8/typedapi/types":     "the typed API's types: 858 packages come with it",
	"github.com/elastic/go-elasticsearch/v8":                    "the root client pulls the typed API; use elastictransport",
}

// TestNoHeavyPackage keeps the packages above out of the agent's build.
func TestNoHeavyPackage(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if why, bad := heavyPackages[p]; bad {
			t.Errorf("the agent imports %s: %s (issue 13)", p, why)
		}
	}
}

// TestNoCLibrary keeps C libraries out of the agent's build: cgo compiles a
// package's C files one after the other with gcc, outside the Go compiler's
// parallelism. github.com/DataDog/zstd (through the Datadog client's
// api/datadog) was 40 C files, 45 s wall and about 50 CPU seconds of a
// 190-CPU-second cold build, on its critical path. The standard library's
// runtime/cgo is the only package allowed C files.
func TestNoCLibrary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{len .CFiles}} {{len .CXXFiles}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			t.Fatalf("go list: %q", l)
		}
		n++
		if f[0] == "runtime/cgo" || (f[1] == "0" && f[2] == "0") {
			continue
		}
		t.Errorf("the agent's build compiles %s C/C++ files of %s: a C library built by gcc at every cold build (issue 13); find a pure-Go package or keep it out", f[1]+"+"+f[2], f[0])
	}
	if n < 100 {
		t.Fatalf("go list listed %d packages: not the agent's graph?", n)
	}
}
