package file

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/input"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/plugins"
)

func TestAppendsNDJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "out.ndjson")
	os.MkdirAll(filepath.Dir(path), 0o755)
	os.WriteFile(path, []byte("{\"old\":true}\n"), 0o600)
	for _, fsync := range []bool{false, true} {
		o, err := New(&Config{Path: path, Fsync: fsync})
		if err != nil {
			t.Fatal(err)
		}
		r, _ := o.Encode(nil, &event.Event{Fields: map[string]any{"fsync": fsync}})
		if err := o.Write(context.Background(), [][]byte{r, r}); err != nil {
			t.Fatal(err)
		}
		o.Close(context.Background())
	}
	got, _ := os.ReadFile(path)
	want := "{\"old\":true}\n{\"fsync\":false}\n{\"fsync\":false}\n{\"fsync\":true}\n{\"fsync\":true}\n"
	if string(got) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestCreatesPrivateFileAndDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new", "dir", "out.ndjson")
	o, err := New(&Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(context.Background())
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("New created the file (validate must create nothing): %v", err)
	}
	r, _ := o.Encode(nil, &event.Event{Fields: map[string]any{}})
	if err := o.Write(context.Background(), [][]byte{r}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", st.Mode().Perm(), err)
	}
}

func TestValidateAndBadPath(t *testing.T) {
	if (&Config{}).Validate() == nil {
		t.Fatal("empty path accepted")
	}
	dir := t.TempDir()
	if _, err := New(&Config{Path: dir}); err == nil {
		t.Fatal("a directory accepted as the output file")
	}
}

func TestREADMEShowsExample(t *testing.T) {
	ex, _ := os.ReadFile("example.yaml")
	readme, _ := os.ReadFile("README.md")
	if len(ex) == 0 || !bytes.Contains(readme, []byte("```yaml\n"+string(ex)+"```")) {
		t.Fatal("README.md does not show example.yaml verbatim")
	}
}

// example.yaml loads through the real config loader.
func TestExampleLoads(t *testing.T) {
	ex, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	reg := plugins.New()
	reg.AddInput("stub", plugins.Input{Config: func() any { return &struct{}{} },
		New: func(any, input.Env) (input.Input, error) { return nil, nil }})
	reg.AddParser("json", plugins.Parser{New: func(parser.Config, plugins.ParserEnv) (parser.Parser, func() parser.Assembler, error) {
		return nil, nil, nil
	}})
	p, _ := plugins.Default.Output("file")
	reg.AddOutput("file", p)
	if _, err := config.Parse("example.yaml", append([]byte("inputs: [{name: x, type: stub}]\n"), ex...), reg); err != nil {
		t.Fatal(err)
	}
}

// Batches larger than one writev takes, with empty and large records, are
// written whole and in order; the next batch follows.
func TestLargeBatchesInOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.ndjson")
	o, err := New(&Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(context.Background())
	var want bytes.Buffer
	for _, size := range []int{1, maxIovecs - 1, maxIovecs, maxIovecs + 1, 3*maxIovecs + 7} {
		batch := make([][]byte, size)
		for i := range batch {
			switch {
			case i%500 == 7:
				batch[i] = nil // nothing to write
			case i%700 == 3:
				batch[i] = append(bytes.Repeat([]byte{'x'}, 200_000), '\n')
			default:
				batch[i] = []byte(fmt.Sprintf("{\"batch\":%d,\"i\":%d}\n", size, i))
			}
			want.Write(batch[i])
		}
		if err := o.Write(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("file holds %d bytes, want %d (first difference at %d)", len(got), want.Len(), firstDiff(got, want.Bytes()))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
