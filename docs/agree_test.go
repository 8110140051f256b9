package docs_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sidelog/sidelog/buffer"
	"github.com/sidelog/sidelog/config/units"
	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/parser/build"
	"github.com/sidelog/sidelog/plugins"
)

// Issue 20: statements of the docs that disagreed with the code.
func TestDocsAgreeWithCode(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	ops := read("operations.md")
	// The disk buffer's default size.
	want := "`buffer.max_bytes` (default " + units.Size(buffer.DefaultDiskMaxBytes).String() + ")"
	if !strings.Contains(ops, want) {
		t.Errorf("operations.md does not say %s", want)
	}
	// Alerts: the scrape job of annotation-based discovery is the
	// cluster's, never "sidelog".
	if strings.Contains(ops, `job="sidelog"`) {
		t.Error(`operations.md: an alert selects job="sidelog", which annotation-based scraping never sets`)
	}
	// No doc points outside the repository.
	docs, _ := filepath.Glob("*.md")
	for _, d := range append(docs, "../README.md") {
		if s := read(d); strings.Contains(s, "/work/") {
			t.Errorf("%s refers to a path outside the repository (/work/...)", d)
		}
	}
	// parsers.md on RawJSON and added fields: what the code does.
	if strings.Contains(read("parsers.md"), "clears `RawJSON`") {
		t.Error("parsers.md says adding a field clears RawJSON")
	}
	p, _, err := build.Build(plugins.Default, parser.Config{Parser: "json", Fields: map[string]string{"env": "prod"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	e := &event.Event{Raw: []byte(`{"a":1}`)}
	p.Parse(e)
	if !e.Has(event.RawJSON) || string(event.AppendJSON(nil, e)) != `{"a":1,"env":"prod"}` {
		t.Errorf("a static field on a JSON line: RawJSON %v, %s", e.Has(event.RawJSON), event.AppendJSON(nil, e))
	}
}
