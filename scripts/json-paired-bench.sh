#!/usr/bin/env bash
# Times parser/json at several revisions in ONE process, alternating blocks
# of lines between them, so that a loaded machine slows all of them alike
# (separate `go test -bench` processes vary by tens of percent there; see
# docs/benchmarks.md, "Duplicate-key detection").
#
#   scripts/json-paired-bench.sh [flags --] REV...
#
# REV is a git revision or "." (the working tree); default: b98bc89 and ".".
# Flags go to the harness: -rounds N (600), -block N (2000 lines),
# -modes full,sel2,validate, -line FILE (one JSON line instead of the bench
# line), -varying (add an object whose keys change on every line).
# Prints, per mode and revision, the minimum, 10th percentile and median
# ns per line, and each revision's minimum against the first one's.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
flags=()
if [[ " $* " == *" -- "* ]]; then
	while [[ $1 != -- ]]; do flags+=("$1"); shift; done
	shift
fi
revs=("$@")
[[ ${#revs[@]} -gt 0 ]] || revs=(b98bc89 .)

# The copies live inside the module (they import its event and parser
# packages) and are removed on exit.
tmp="$root/internal/jsonpairedtmp"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
imports="" ctors=""
for k in "${!revs[@]}"; do
	rev=${revs[$k]} d="$tmp/v$k"
	mkdir -p "$d"
	if [[ $rev == . ]]; then
		files=$(cd "$root/parser/json" && ls -- *.go | grep -v '_test\.go$')
	else
		files=$(git -C "$root" ls-tree --name-only "$rev" parser/json/ | sed -n 's|^parser/json/\([^/]*\.go\)$|\1|p' | grep -v '_test\.go$')
	fi
	for f in $files; do
		if [[ $rev == . ]]; then cat "$root/parser/json/$f"; else git -C "$root" show "$rev:parser/json/$f"; fi |
			sed -e "s/^package json\$/package v$k/" -e '/^func init() {$/,/^}$/d' -e '/sidelog\/plugins"$/d' >"$d/$f"
	done
	imports+="	v$k \"github.com/sidelog/sidelog/internal/jsonpairedtmp/v$k\""$'\n'
	ctors+="		func() parserI { return v$k.New() },"$'\n'
	echo "v$k = $rev"
done

mkdir -p "$tmp/run"
cat >"$tmp/run/main.go" <<EOF
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/sidelog/sidelog/event"
$imports)

type parserI interface {
	Parse(*event.Event)
	SelectKeys([]string, bool)
}

const appLine = \`{"ts":"2026-11-25T10:00:00.123Z","level":"info","msg":"request served","service":"checkout","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","user_id":12345,"latency_ms":12.5,"path":"/api/v1/orders","status":200}\`

func main() {
	rounds := flag.Int("rounds", 600, "rounds (one block per revision and mode each)")
	block := flag.Int("block", 2000, "lines per block")
	lineF := flag.String("line", "", "file holding the line to parse")
	modesF := flag.String("modes", "full,sel2,validate", "")
	varying := flag.Bool("varying", false, "add an object whose keys change on every line (8192 lines)")
	flag.Parse()
	line := appLine
	if *lineF != "" {
		b, err := os.ReadFile(*lineF)
		if err != nil {
			panic(err)
		}
		line = strings.TrimSpace(string(b))
	}
	lines := make([][]byte, 64)
	for i := range lines {
		lines[i] = []byte(line)
	}
	if *varying {
		lines = make([][]byte, 8192)
		for i := range lines {
			lines[i] = []byte(strings.TrimSuffix(line, "}") + fmt.Sprintf(\`,"labels":{"pod-%d":"a","node-%d":"b","zone-%d":"c"}}\`, i, i*7, i*13))
		}
	}
	ctors := []func() parserI{
$ctors	}
	modes := strings.Split(*modesF, ",")
	ps := make([][]parserI, len(ctors))
	for v, f := range ctors {
		for _, m := range modes {
			p := f()
			switch m {
			case "sel2":
				p.SelectKeys([]string{"level", "service"}, false)
			case "validate":
				p.SelectKeys(nil, false)
			}
			ps[v] = append(ps[v], p)
		}
	}
	res := make([][][]float64, len(ctors))
	for v := range res {
		res[v] = make([][]float64, len(modes))
	}
	for r := 0; r < *rounds; r++ {
		for mi := range modes {
			for k := range ctors {
				v := (k + r) % len(ctors)
				p := ps[v][mi]
				var e event.Event
				t0 := time.Now()
				for i := 0; i < *block; i++ {
					e = event.Event{Raw: lines[i%len(lines)]}
					p.Parse(&e)
				}
				d := time.Since(t0)
				if e.Has(event.ParseFailed) {
					panic(fmt.Sprint(e.Fields))
				}
				res[v][mi] = append(res[v][mi], float64(d.Nanoseconds())/float64(*block))
			}
		}
	}
	for mi, m := range modes {
		var first float64
		for v := range ctors {
			x := res[v][mi]
			sort.Float64s(x)
			if v == 0 {
				first = x[0]
			}
			fmt.Printf("%-9s v%d  min %7.1f  p10 %7.1f  median %7.1f ns/line  min vs v0 %+5.1f%%\n",
				m, v, x[0], x[len(x)/10], x[len(x)/2], (x[0]/first-1)*100)
		}
	}
}
EOF
cd "$root" && go run ./internal/jsonpairedtmp/run "${flags[@]}"
