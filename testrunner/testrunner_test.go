package testrunner

import (
	"bytes"
	"os"
	"strings"
	"testing"

	_ "github.com/sidelog/sidelog/plugins/all"
)

func run(t *testing.T, tests string) (int, string, string) {
	t.Helper()
	t.Setenv("SIDELOG_TEST_DATA_DIR", t.TempDir())
	var out, errOut bytes.Buffer
	code := Main([]string{"-c", "testdata/sidelog.yaml", tests}, &out, &errOut, nil)
	return code, out.String(), errOut.String()
}

func TestPassingFile(t *testing.T) {
	code, out, errOut := run(t, "testdata/pass.yaml")
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "all 5 tests passed") || strings.Count(out, "PASS ") != 5 {
		t.Fatalf("stdout:\n%s", out)
	}
}

func TestFailingFileShowsDiff(t *testing.T) {
	code, out, errOut := run(t, "testdata/fail.yaml")
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	want := []string{
		"PASS debug records reach no output",
		"FAIL wrong expectation (the rename to message is forgotten, and the warn is missing) (testdata/fail.yaml:8)",
		"  output console: expected 1 record(s), got 2   (- expected, + got)",
		`    - {"env":"prod","latency_ms":10,"latency_s":0.01,"level":"error","msg":"boom","service":"checkout"}`,
		`    + {"env":"prod","latency_ms":10,"latency_s":0.01,"level":"error","message":"boom","service":"checkout"}`,
		`    + {"level":"warn","msg":"slow","service":"cart"}`,
		"1 of 2 tests failed",
	}
	for _, w := range want {
		if !strings.Contains(out, w+"\n") {
			t.Errorf("stdout lacks %q\nstdout:\n%s", w, out)
		}
	}
	if strings.Contains(out, "output archive") {
		t.Errorf("archive is not in expect and must not be checked:\n%s", out)
	}
}

func TestBadFiles(t *testing.T) {
	cases := []struct{ name, body, want string }{
		{"unknown key", "tests:\n  - name: x\n    input: app\n    lines: ['{}']\n    expected: {}\n", "field expected not found"},
		{"no expectation", "tests:\n  - name: x\n    input: app\n    lines: ['{}']\n", "give expect (per output) or expect_no_output: true"},
		{"unknown output", "tests:\n  - name: x\n    input: app\n    lines: ['{}']\n    expect: {es: []}\n", `no output named "es"`},
		{"input needed", "tests:\n  - name: x\n    lines: ['{}']\n    expect: {console: []}\n", "name its input"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := dir + "/t.yaml"
			if err := writeFile(path, c.body); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := run(t, path)
			if code != 2 || !strings.Contains(errOut, c.want) {
				t.Fatalf("exit %d, stderr %q, want 2 and %q (stdout %q)", code, errOut, c.want, out)
			}
		})
	}
}

func TestDiff(t *testing.T) {
	got := diff([]string{"a", "b", "c"}, []string{"a", "x", "c", "d"})
	want := []string{"  a", "- b", "+ x", "  c", "+ d"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("diff = %q, want %q", got, want)
	}
}

func writeFile(path, body string) error { return os.WriteFile(path, []byte(body), 0o644) }

// Issue 20 item 4: the tail drops blank lines and a trailing \r; a rule
// test must see the records production sees (on today's main a blank line
// became a parse-error record in the test and nothing in production).
func TestBlankLinesAsTheTailReadsThem(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/t.yaml"
	body := "tests:\n  - name: blank lines are no records\n    input: app\n    lines:\n" +
		"      - '{\"level\":\"info\",\"msg\":\"a\"}'\n      - ''\n      - \"\\r\"\n" +
		"      - \"{\\\"level\\\":\\\"info\\\",\\\"msg\\\":\\\"b\\\"}\\r\"\n" +
		"    expect:\n      archive:\n        - {level: info, msg: a}\n        - {level: info, msg: b}\n"
	if err := writeFile(path, body); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, path)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}
