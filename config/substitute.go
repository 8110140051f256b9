package config

import (
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

var reference = regexp.MustCompile(`\$\{([^}]*)\}`)

// substitute replaces ${VAR} by an environment variable and ${file:/path}
// by the file's trimmed contents in every scalar value (not in keys).
// ${VAR:-default} gives default when VAR is unset or empty (as in the
// shell; the default is taken literally). A missing one is an error; "$${" writes a literal "${". Errors name the
// reference, never the value.
func substitute(n *yaml.Node, path string, d *decoder) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for i, c := range n.Content {
			p := path
			if n.Kind == yaml.SequenceNode {
				p = path + "[" + itoa(i) + "]"
			}
			substitute(c, p, d)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			substitute(n.Content[i+1], join(path, n.Content[i].Value), d)
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "${") {
			return
		}
		orig := n.Value
		const esc = "\x00dollar\x00"
		v := strings.ReplaceAll(orig, "$${", esc)
		v = reference.ReplaceAllStringFunc(v, func(m string) string {
			ref := m[2 : len(m)-1]
			if file, ok := strings.CutPrefix(ref, "file:"); ok {
				b, err := os.ReadFile(file)
				if err != nil {
					d.fail(n, path, "${file:%s}: cannot read the file: %s", file, errReason(err))
					return ""
				}
				v := strings.TrimSpace(string(b))
				d.errs.secret(v, m)
				return v
			}
			name, def, hasDef := strings.Cut(ref, ":-")
			val, ok := os.LookupEnv(name)
			if hasDef {
				if !ok || val == "" {
					return def
				}
				d.errs.secret(val, m)
				return val
			}
			if !ok {
				d.fail(n, path, "${%s}: environment variable is not set", ref)
				return ""
			}
			d.errs.secret(val, m)
			return val
		})
		v = strings.ReplaceAll(v, esc, "${")
		d.original[n] = orig
		d.errs.secret(v, orig)
		n.Value = v
		if n.Tag != "!!str" {
			// Let the decoder re-resolve the scalar's type (a number, a bool).
			var probe yaml.Node
			if yaml.Unmarshal([]byte(v), &probe) == nil && len(probe.Content) == 1 && probe.Content[0].Kind == yaml.ScalarNode {
				n.Tag = probe.Content[0].Tag
			} else {
				n.Tag = "!!str"
			}
		}
	}
}

func errReason(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}
