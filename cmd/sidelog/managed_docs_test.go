package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestManagedDocsConfigsValidate: every configuration in the managed
// services' pages (docs/managed-*.md: the yaml blocks that hold outputs)
// passes `sidelog validate`, its data_dir pointed into a temporary
// directory; and the Serverless one is refused with id: source.
func TestManagedDocsConfigsValidate(t *testing.T) {
	pages, err := filepath.Glob("../../docs/managed-*.md")
	if err != nil || len(pages) < 2 {
		t.Fatalf("managed services' pages: %v %v", pages, err)
	}
	t.Setenv("ELASTIC_API_KEY", "ZG9jcy10ZXN0OmtleQ==")
	block := regexp.MustCompile("(?s)```yaml\n(.*?)```")
	n := 0
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range block.FindAllStringSubmatch(string(b), -1) {
			if !strings.Contains(m[1], "outputs:") {
				continue
			}
			n++
			name := filepath.Base(page) + "#" + string(rune('1'+i))
			dir := t.TempDir()
			text := strings.ReplaceAll(m[1], "/var/lib/sidelog", filepath.Join(dir, "data"))
			cfg := filepath.Join(dir, "sidelog.yaml")
			if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			if code := run([]string{"validate", "-c", cfg}, &stdout, &stderr); code != 0 {
				t.Errorf("%s: validate exit %d: %s", name, code, stderr.String())
			}
			if strings.Contains(text, "service: aoss") {
				bad := strings.Replace(text, "id: none", "id: source", 1)
				if err := os.WriteFile(cfg, []byte(bad), 0o644); err != nil {
					t.Fatal(err)
				}
				stderr.Reset()
				if code := run([]string{"validate", "-c", cfg}, &stdout, &stderr); code == 0 || !strings.Contains(stderr.String(), "id: none") {
					t.Errorf("%s with id: source: exit %d: %s", name, code, stderr.String())
				}
			}
		}
	}
	if n < 4 {
		t.Fatalf("found %d configurations in %v, want 4", n, pages)
	}
}
