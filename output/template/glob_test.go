package template

import "testing"

func TestGlob(t *testing.T) {
	for src, want := range map[string]string{
		"app-{{ service }}-%Y.%m.%d":     "app-*-*.*.*",
		"logs-sidelog-default":           "logs-sidelog-default",
		"logs-{{ a }}{{ b }}-default":    "logs-*-default",
		"{{ index }}":                    "*",
		"%Y%m%d-x":                       "*-x",
		"{{ a ?? \"x\" }}-100%%":         "*-100%",
		"k8s-{{ kubernetes.namespace }}": "k8s-*",
	} {
		if got := MustCompile(src).Glob(); got != want {
			t.Errorf("%s: %q, want %q", src, got, want)
		}
	}
}
