package pipeline_test

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/pipeline"
	"github.com/sidelog/sidelog/plugins"
	_ "github.com/sidelog/sidelog/plugins/all"
)

// Golden router tests: testdata/router/<case>/{config.yaml,input.log} and
// one expected/<output>.ndjson per output (an empty file: the output gets
// nothing). Every case runs the config's first input over input.log.
func TestRouterGolden(t *testing.T) {
	cases, _ := filepath.Glob("testdata/router/*")
	if len(cases) == 0 {
		t.Fatal("no golden cases")
	}
	for _, dir := range cases {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Setenv("SIDELOG_TEST_DIR", t.TempDir())
			cfg, err := config.Load(filepath.Join(dir, "config.yaml"), plugins.Default)
			if err != nil {
				t.Fatal(err)
			}
			p, err := pipeline.Build(cfg, pipeline.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			in, err := os.ReadFile(filepath.Join(dir, "input.log"))
			if err != nil {
				t.Fatal(err)
			}
			lines := bytes.Split(bytes.TrimSuffix(in, []byte("\n")), []byte("\n"))
			got, err := p.Process(cfg.Inputs[0].Name, "/var/log/app/app.log", lines)
			if err != nil {
				t.Fatal(err)
			}
			expected, _ := filepath.Glob(filepath.Join(dir, "expected", "*.ndjson"))
			if len(expected) != len(got) {
				names := make([]string, 0, len(got))
				for n := range got {
					names = append(names, n)
				}
				sort.Strings(names)
				t.Fatalf("%d expected files for outputs %v", len(expected), names)
			}
			for _, f := range expected {
				name := strings.TrimSuffix(filepath.Base(f), ".ndjson")
				want, _ := os.ReadFile(f)
				var b strings.Builder
				for _, r := range got[name] {
					b.Write(r)
					b.WriteByte('\n')
				}
				if b.String() != string(want) {
					t.Errorf("output %s:\ngot:\n%s\nwant:\n%s", name, b.String(), want)
				}
			}
		})
	}
}
