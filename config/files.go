package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sidelog/sidelog/plugins"
)

// A config may come from several files: `-c` given more than once, or a
// directory (a mounted ConfigMap with one key per concern, say). They are
// merged into one root mapping, in order (a directory's files in lexical
// order), with one rule per kind of key:
//
//   - the plugin lists (inputs, filters, outputs) and parsers are
//     concatenated, so each file can add its own; names must stay unique
//     across files (the usual duplicate-name error names both);
//   - a mapping present in several files (api, dead_letter, metrics) is
//     merged key by key, recursively;
//   - any other value set in several files takes the last file's value.
//
// Line numbers keep pointing into their own file: before the merge, file i's
// lines are shifted by i × lineBlock, and Errors.add shifts them back.

// lineBlock separates the files of a merged config in line numbers.
const lineBlock = 1 << 24

// concatenated are the top-level keys whose lists are joined across files.
var concatenated = map[string]bool{"inputs": true, "filters": true, "outputs": true, "parsers": true}

// LoadFiles reads, merges and checks the config given by paths: files, or
// directories of *.yaml and *.yml files (hidden entries, such as a
// ConfigMap's ..data, are skipped; their symlinked files are read).
func LoadFiles(paths []string, reg *plugins.Registry) (*Config, error) {
	if len(paths) == 0 {
		return nil, errors.New("no config file given")
	}
	files, err := expand(paths)
	if err != nil {
		return nil, err
	}
	name := strings.Join(paths, ", ")
	var cfg *Config
	if len(files) == 1 {
		data, err := os.ReadFile(files[0])
		if err != nil {
			return nil, err
		}
		root, err := parseYAML(files[0], data)
		if err != nil {
			return nil, err
		}
		if cfg, err = parseRoot(files[0], root, nil, reg); err != nil {
			return nil, err
		}
	} else {
		var roots []*yaml.Node
		for i, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			root, err := parseYAML(f, data)
			if err != nil {
				return nil, err
			}
			if root == nil {
				continue // an empty file adds nothing
			}
			if root.Kind != yaml.MappingNode {
				return nil, &Errors{File: f, List: []Error{{File: f, Line: root.Line, Msg: "a config file must be a mapping of keys"}}}
			}
			shift(root, i*lineBlock)
			roots = append(roots, root)
		}
		var root *yaml.Node
		if len(roots) > 0 {
			root = roots[0]
			for _, r := range roots[1:] {
				root = merge(root, r, true)
			}
		}
		if cfg, err = parseRoot(name, root, files, reg); err != nil {
			return nil, err
		}
	}
	cfg.File = name
	cfg.Paths = append([]string(nil), paths...)
	return cfg, nil
}

// Files lists the files paths stand for, in merge order.
func Files(paths []string) ([]string, error) { return expand(paths) }

func expand(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		var in []string
		for _, e := range entries {
			n := e.Name()
			if strings.HasPrefix(n, ".") {
				continue
			}
			if ext := filepath.Ext(n); ext != ".yaml" && ext != ".yml" {
				continue
			}
			full := filepath.Join(p, n)
			if st, err := os.Stat(full); err != nil || st.IsDir() {
				continue // a dangling symlink mid-swap, or a folder
			}
			in = append(in, full)
		}
		if len(in) == 0 {
			return nil, fmt.Errorf("%s: no *.yaml or *.yml file in this directory", p)
		}
		sort.Strings(in)
		files = append(files, in...)
	}
	return files, nil
}

// shift adds by to the line of every node under n.
func shift(n *yaml.Node, by int) {
	if n == nil || by == 0 {
		return
	}
	n.Line += by
	for _, c := range n.Content {
		shift(c, by)
	}
}

// merge returns b merged onto a (both mappings): see the rules above. top
// says a and b are root mappings (where the plugin lists are joined).
func merge(a, b *yaml.Node, top bool) *yaml.Node {
	out := &yaml.Node{Kind: yaml.MappingNode, Tag: a.Tag, Line: a.Line, Column: a.Column}
	index := map[string]int{}
	for i := 0; i+1 < len(a.Content); i += 2 {
		index[a.Content[i].Value] = len(out.Content)
		out.Content = append(out.Content, a.Content[i], a.Content[i+1])
	}
	for i := 0; i+1 < len(b.Content); i += 2 {
		k, v := b.Content[i], b.Content[i+1]
		at, ok := index[k.Value]
		if !ok {
			index[k.Value] = len(out.Content)
			out.Content = append(out.Content, k, v)
			continue
		}
		old := resolve(out.Content[at+1])
		nv := resolve(v)
		switch {
		case top && concatenated[k.Value] && old.Kind == yaml.SequenceNode && nv.Kind == yaml.SequenceNode:
			seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: old.Tag, Line: old.Line, Column: old.Column}
			seq.Content = append(append(seq.Content, old.Content...), nv.Content...)
			out.Content[at+1] = seq
		case !(top && concatenated[k.Value]) && old.Kind == yaml.MappingNode && nv.Kind == yaml.MappingNode:
			out.Content[at+1] = merge(old, nv, false)
		default:
			// The later file wins; its key carries the line errors name.
			out.Content[at], out.Content[at+1] = k, v
		}
	}
	return out
}
