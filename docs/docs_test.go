// Package docs_test keeps docs/configuration.md in sync with the config
// structs: every key a struct accepts is documented in its section, and
// every documented key exists.
package docs_test

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/plugins"
	_ "github.com/sidelog/sidelog/plugins/all"
)

// sections parses configuration.md: the text after each
// "<!-- keys: NAME -->" marker, up to the next heading, holds a table whose
// first column lists the keys as `key`.
func sections(t *testing.T) map[string][]string {
	t.Helper()
	data, err := os.ReadFile("configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	marker := regexp.MustCompile(`<!-- keys: (\S+) -->`)
	row := regexp.MustCompile("(?m)^\\| `([^`]+)` \\|")
	out := map[string][]string{}
	locs := marker.FindAllStringSubmatchIndex(string(data), -1)
	for i, loc := range locs {
		name := string(data[loc[2]:loc[3]])
		end := len(data)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		body := string(data[loc[1]:end])
		if h := strings.Index(body, "\n#"); h >= 0 {
			body = body[:h]
		}
		if _, dup := out[name]; dup {
			t.Errorf("configuration.md: section %s twice", name)
		}
		keys := []string{}
		for _, m := range row.FindAllStringSubmatch(body, -1) {
			keys = append(keys, m[1])
		}
		out[name] = keys
	}
	return out
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	timeType     = reflect.TypeFor[time.Time]()
)

// keysOf lists the dotted keys of a config struct: config.Keys for each
// level, descending into nested structs (tls.ca_file, buffer.max_bytes).
func keysOf(v any) []string {
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer {
		rv = rv.Elem()
	}
	var out []string
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		byKey := map[string]reflect.Type{}
		collect(t, byKey)
		keys := config.Keys(reflect.New(t).Interface())
		for _, k := range keys {
			ft, ok := byKey[k]
			if !ok {
				out = append(out, prefix+k)
				continue
			}
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != timeType && ft != durationType {
				walk(prefix+k+".", ft)
				continue
			}
			out = append(out, prefix+k)
		}
	}
	walk("", rv.Type())
	slices.Sort(out)
	return out
}

// collect maps yaml keys to field types, following inline structs (the
// same rules as the loader; config.Keys gives the authoritative names).
func collect(t reflect.Type, into map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if opts == "inline" || (f.Anonymous && name == "") {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			collect(ft, into)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		into[name] = f.Type
	}
}

func TestConfigurationDocIsComplete(t *testing.T) {
	doc := sections(t)
	reg := plugins.Default
	want := map[string][]string{
		"top":    keysOf(&config.Config{}),
		"input":  keysOf(&config.Input{}),
		"filter": keysOf(&config.Filter{}),
		"output": keysOf(&config.Output{}),
	}
	for _, n := range reg.InputNames() {
		p, _ := reg.Input(n)
		want["input/"+n] = keysOf(p.Config())
	}
	for _, n := range reg.FilterNames() {
		p, _ := reg.Filter(n)
		want["filter/"+n] = keysOf(p.Config())
	}
	for _, n := range reg.OutputNames() {
		p, _ := reg.Output(n)
		want["output/"+n] = keysOf(p.Config())
	}
	if len(want["top"]) < 8 || len(want["output"]) < 10 {
		t.Fatalf("the struct walk found too few keys: %v", want)
	}
	for section, keys := range want {
		documented, ok := doc[section]
		if !ok {
			t.Errorf("configuration.md has no section <!-- keys: %s -->", section)
			continue
		}
		for _, k := range keys {
			if !slices.Contains(documented, k) {
				t.Errorf("configuration.md, section %s: key `%s` is not documented", section, k)
			}
		}
		for _, k := range documented {
			if !slices.Contains(keys, k) {
				t.Errorf("configuration.md, section %s: documents `%s`, which the config does not accept", section, k)
			}
		}
	}
	// A section for a plugin that is not built in: only the optional ones.
	optional := map[string]bool{"output/datadog": true}
	for section := range doc {
		if _, ok := want[section]; !ok && !optional[section] {
			t.Errorf("configuration.md documents %s, which does not exist", section)
		}
	}
	// Every parser is named where `parser` is documented.
	in := sectionText(t, "input")
	for _, p := range reg.ParserNames() {
		if !strings.Contains(in, "`"+p+"`") {
			t.Errorf("configuration.md does not name the parser `%s`", p)
		}
	}
}

func sectionText(t *testing.T, name string) string {
	data, err := os.ReadFile("configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i := strings.Index(s, "<!-- keys: "+name+" -->")
	if i < 0 {
		t.Fatalf("no section %s", name)
	}
	s = s[i:]
	if j := strings.Index(s[1:], "<!-- keys:"); j >= 0 {
		s = s[:j+1]
	}
	return s
}

// The walk sees nested keys and would notice a missing one.
func TestKeysOf(t *testing.T) {
	type inner struct {
		A string `yaml:"a"`
	}
	type cfg struct {
		X  string        `yaml:"x"`
		D  time.Duration `yaml:"d"`
		In *inner        `yaml:"in"`
		N  inner         `yaml:"n"`
		S  []string      `yaml:"s"`
		H  string        `yaml:"-"`
	}
	got := strings.Join(keysOf(&cfg{}), ",")
	if got != "d,in.a,n.a,s,x" {
		t.Fatalf("keysOf = %s", got)
	}
}
