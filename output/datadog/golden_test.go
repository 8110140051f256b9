package datadog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/output/datadog/ddtest"
)

// Golden cases: testdata/<case>/{config.yaml, input.log, expected.ndjson}.
// Each line of input.log is parsed as JSON when it is an object (else left
// unparsed), sent, and the entry the intake receives (without its
// timestamp) must equal the line of expected.ndjson.
func TestGolden(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/*/config.yaml")
	if len(dirs) == 0 {
		t.Fatal("no golden cases")
	}
	for _, cfgPath := range dirs {
		dir := filepath.Dir(cfgPath)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			raw, err := os.ReadFile(cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			srv := ddtest.New(testKey)
			defer srv.Close()
			o := newOutput(t, srv, func(c *Config) {
				dec := yaml.NewDecoder(bytes.NewReader(raw))
				dec.KnownFields(true)
				if err := dec.Decode(c); err != nil {
					t.Fatal(err)
				}
			})
			in, err := os.ReadFile(filepath.Join(dir, "input.log"))
			if err != nil {
				t.Fatal(err)
			}
			var recs [][]byte
			for line := range bytes.Lines(in) {
				line = bytes.TrimSuffix(line, []byte("\n"))
				e := &event.Event{Raw: line, Time: time.Now()}
				if json.Unmarshal(line, &e.Fields) == nil {
					e.Flags |= event.RawJSON
				}
				recs = append(recs, encode(t, o, e)...)
			}
			if err := o.Write(context.Background(), recs); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(filepath.Join(dir, "expected.ndjson"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got := srv.Entries()
			sc := bufio.NewScanner(f)
			i := 0
			for ; sc.Scan(); i++ {
				var want ddtest.Entry
				if err := json.Unmarshal(sc.Bytes(), &want); err != nil {
					t.Fatal(err)
				}
				if i >= len(got) {
					t.Fatalf("only %d entries", len(got))
				}
				g := got[i]
				g.Timestamp, g.Size, g.Query = 0, 0, ""
				if g != want {
					t.Errorf("line %d:\n got %+v\nwant %+v", i+1, g, want)
				}
			}
			if i != len(got) {
				t.Errorf("%d entries, %d expected", len(got), i)
			}
		})
	}
}
