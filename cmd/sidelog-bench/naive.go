package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// naive is the reference that sidelog's CPU is compared with: what a Go
// program written the obvious way costs to read and decode the same lines,
// with no output at all. `sidelog-bench naive FILE` runs it as its own
// process so that its CPU and peak RSS are measured exactly like sidelog's.
// It prints the number of records decoded.
func naive(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: sidelog-bench naive FILE")
		return 2
	}
	f, err := os.Open(args[0])
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer f.Close()
	n, err := naiveDecode(f)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintln(stdout, n)
	return 0
}

// naiveDecode decodes every line into a map[string]any with bufio.Scanner
// and json.Unmarshal, the way the reference in issue 10 is defined.
func naiveDecode(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var n int64
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return n, fmt.Errorf("line %d: %w", n+1, err)
		}
		n++
	}
	return n, sc.Err()
}
