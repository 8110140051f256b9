// Security requirements of issue 9: no substituted secret (${VAR},
// ${file:}) in any config error, and the disk buffer's files private
// (directories 0700, files 0600).

package deploy_test

import (
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateNeverPrintsSecretsInValues(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "es-password")
	if err := os.WriteFile(secretFile, []byte(fileSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"ES_PASSWORD=" + envSecret}
	cases := map[string]validateCase{
		"secret in a key of the wrong type": {`
inputs: [{name: app, type: tail, paths: ["` + dir + `/*.log"]}]
outputs:
  - {name: es, type: elasticsearch, endpoints: ["http://127.0.0.1:9"], index: logs, max_in_flight: "${ES_PASSWORD}", timeout: "${file:` + secretFile + `}"}
`, 1},
		"secret as an endpoint and an index": {`
inputs: [{name: app, type: tail, paths: ["` + dir + `/*.log"]}]
outputs:
  - {name: es, type: elasticsearch, endpoints: ["${ES_PASSWORD}"], index: "{{ ${ES_PASSWORD}", mode: "${file:` + secretFile + `}"}
`, 1},
		"secret in an enum and an unknown key": {`
inputs: [{name: app, type: tail, paths: ["` + dir + `/*.log"], read_from: "${ES_PASSWORD}"}]
filters:
  - {type: drop, when: 'level == "${ES_PASSWORD}" &&'}
outputs:
  - {name: es, type: elasticsearch, endpoints: ["http://127.0.0.1:9"], index: logs, passwd: "${ES_PASSWORD}", password: "${file:` + secretFile + `}"}
`, 1},
		"secret as a size and a duration": {`
shutdown_timeout: "${ES_PASSWORD}"
dead_letter: {max_bytes: "${file:` + secretFile + `}"}
inputs: [{name: app, type: tail, paths: ["` + dir + `/*.log"]}]
outputs: [{name: out, type: stdout, format: "${ES_PASSWORD}"}]
`, 1},
	}
	checkValidate(t, dir, env, cases)
}

// data_dir is 0700 and everything the agent writes in it is 0600 (or 0700
// for directories): no group or other bits anywhere.
func TestDataDirModes(t *testing.T) {
	es := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/" {
			// The output's start-up probe (issue 16) learns the version.
			fmt.Fprint(w, `{"version":{"number":"8.15.0"},"tagline":"You Know, for Search"}`)
			return
		}
		n := 0
		if r.URL.Path == "/_bulk" {
			body := make([]byte, 1<<20)
			k, _ := r.Body.Read(body)
			n = strings.Count(string(body[:k]), "\n") / 2
		}
		items := strings.TrimSuffix(strings.Repeat(`{"index":{"status":201}},`, n), ",")
		fmt.Fprintf(w, `{"errors":false,"items":[%s]}`, items)
	}))
	defer es.Close()
	dir := t.TempDir()
	logs, data := filepath.Join(dir, "logs"), filepath.Join(dir, "data")
	os.MkdirAll(logs, 0o755)
	os.WriteFile(filepath.Join(logs, "a.log"), []byte(`{"msg":"x"}`+"\n"), 0o644)
	cfg := filepath.Join(dir, "sidelog.yaml")
	os.WriteFile(cfg, []byte(`
data_dir: `+data+`
api: {address: ""}
inputs: [{name: app, type: tail, paths: ["`+logs+`/*.log"], exit_on_eof: true}]
outputs:
  - {name: es, type: elasticsearch, endpoints: ["`+es.URL+`"], index: logs, compression: none, buffer: {type: disk}}
`), 0o600)
	cmd := exec.Command(sidelogBinary(t), "run", "-c", cfg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	err := filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if perm := info.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s has mode %v: group or others have access", p, perm)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
