package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// The generated data sets. A data set is a pure function of its kind and its
// number of lines: the same flags give the same bytes on every machine, so
// figures compare across runs and machines.

// genVersion changes whenever the generator's output changes, so that data
// sets kept from an older version are regenerated.
const genVersion = 1

// Levels, in the order of Stats.Levels.
var levelNames = [4]string{"info", "debug", "warn", "error"}

// Stats describes a generated data set; it is stored beside the data set as
// a manifest and drives the verification of output counts.
type Stats struct {
	Version int    `json:"version"`
	Kind    string `json:"kind"` // json | json-short | cri
	// Records is the number of logical records (JSON documents).
	Records int64 `json:"records"`
	// PhysicalLines counts the lines of the file (CRI: P and F pieces).
	PhysicalLines int64 `json:"physical_lines"`
	// Bytes is the file size.
	Bytes int64 `json:"bytes"`
	// JSONBytes is the size of the JSON documents with their newlines.
	JSONBytes int64 `json:"json_bytes"`
	// Levels counts records by level: info, debug, warn, error.
	Levels [4]int64 `json:"levels"`
	// Partial counts records split into a P and an F piece (CRI).
	Partial int64 `json:"partial"`
}

// Level returns the count of one level by name.
func (s Stats) Level(name string) int64 {
	for i, n := range levelNames {
		if n == name {
			return s.Levels[i]
		}
	}
	return 0
}

var (
	services = []string{"checkout", "payments", "cart", "search", "auth", "inventory", "shipping", "frontend"}
	paths    = []string{"/api/v1/orders/", "/api/v1/carts/", "/api/v1/users/", "/api/v2/search?q=item-", "/api/v1/payments/", "/healthz/", "/api/v1/inventory/items/"}
	messages = [4][]string{
		{ // info
			"request completed for the authenticated user",
			"order accepted and queued for fulfilment",
			"response served from the regional edge cache",
			"user profile loaded from the database replica",
			"payment authorisation approved by the provider",
		},
		{ // debug
			"entering handler with decoded request parameters",
			"connection pool: idle=12 in_use=4 waiting=0",
			"feature flags evaluated for the current tenant",
			"response body serialised before compression",
		},
		{ // warn
			"slow upstream response exceeded the latency budget",
			"retrying after a transient connection reset by peer",
			"rate limit nearly exhausted for the api client",
		},
		{ // error
			"upstream service unavailable after all retries",
			"transaction rolled back on a serialisation conflict",
			"failed to decode the request body: unexpected EOF",
		},
	}
	statusByLevel = [4][]int{{200, 200, 200, 201, 204, 304}, {200, 200, 201}, {400, 404, 409, 429}, {500, 502, 503, 504}}
)

// baseTime is the time of the first record.
var baseTime = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

// generator produces the JSON app-log lines, one at a time, into a reused
// buffer (no allocation per line).
type generator struct {
	short bool // json-short: no trace_id, user_id, path
	rng   *rand.Rand
	split *rand.Rand // CRI split decisions, separate so that the JSON stream is the same in both kinds
	i     int64
	line  []byte
	stats Stats
}

func newGenerator(kind string) *generator {
	return &generator{
		rng:   rand.New(rand.NewPCG(0x5eed10, 0xa99106)),
		split: rand.New(rand.NewPCG(0xc41, 0x5b117)),
		line:  make([]byte, 0, 512),
		stats: Stats{Version: genVersion, Kind: kind},
		short: kind == "json-short",
	}
}

const hexDigits = "0123456789abcdef"

// next generates the next JSON document (with its newline) and returns it
// and the event time; the slice is valid until the next call.
func (g *generator) next() ([]byte, time.Time) {
	r := g.rng
	t := baseTime.Add(time.Duration(g.i)*250*time.Microsecond + time.Duration(r.IntN(250_000)))
	g.i++
	var lvl int
	switch p := r.IntN(100); {
	case p < 70:
		lvl = 0
	case p < 90:
		lvl = 1
	case p < 98:
		lvl = 2
	default:
		lvl = 3
	}
	b := g.line[:0]
	b = append(b, `{"ts":"`...)
	b = t.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, `","level":"`...)
	b = append(b, levelNames[lvl]...)
	b = append(b, `","msg":"`...)
	msgs := messages[lvl]
	b = append(b, msgs[r.IntN(len(msgs))]...)
	b = append(b, `","service":"`...)
	b = append(b, services[r.IntN(len(services))]...)
	// The short kind draws the same random numbers (so that the records
	// are otherwise the same) and leaves these fields out.
	tr0, tr1, user := r.Uint64(), r.Uint64(), r.IntN(10_000_000)
	if !g.short {
		b = append(b, `","trace_id":"`...)
		for _, v := range [2]uint64{tr0, tr1} {
			for range 16 {
				b = append(b, hexDigits[v&15])
				v >>= 4
			}
		}
		b = append(b, `","user_id":"u-`...)
		b = appendPadded(b, user, 7)
	}
	b = append(b, `","latency_ms":`...)
	// Mostly fast, a long tail.
	lat := 1 + r.IntN(120)
	if r.IntN(10) == 0 {
		lat += r.IntN(3000)
	}
	b = strconv.AppendInt(b, int64(lat), 10)
	path, pathN := paths[r.IntN(len(paths))], r.IntN(1_000_000)
	if !g.short {
		b = append(b, `,"path":"`...)
		b = append(b, path...)
		b = strconv.AppendInt(b, int64(pathN), 10)
		b = append(b, '"')
	}
	b = append(b, `,"status":`...)
	st := statusByLevel[lvl]
	b = strconv.AppendInt(b, int64(st[r.IntN(len(st))]), 10)
	b = append(b, "}\n"...)
	g.line = b
	g.stats.Records++
	g.stats.Levels[lvl]++
	g.stats.JSONBytes += int64(len(b))
	return b, t
}

func appendPadded(b []byte, v, width int) []byte {
	var tmp [20]byte
	s := strconv.AppendInt(tmp[:0], int64(v), 10)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// criSplitPercent is the share of CRI records split into a P and an F piece.
const criSplitPercent = 5

// writeDataset writes lines records of the given kind to w and returns the
// data set's statistics.
//
// kind "json": one JSON document per line.
// kind "cri": the same documents in the CRI log format that containerd
// writes, `<RFC3339Nano time> stdout F <json>`, 5% of them split into a
// `P` piece and an `F` piece at a deterministic position.
func writeDataset(w io.Writer, kind string, lines int64) (Stats, error) {
	if kind != "json" && kind != "json-short" && kind != "cri" {
		return Stats{}, fmt.Errorf("unknown data set kind %q", kind)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	g := newGenerator(kind)
	var out []byte
	var n int64
	for range lines {
		doc, t := g.next()
		out = out[:0]
		if kind != "cri" {
			out = append(out, doc...)
			g.stats.PhysicalLines++
		} else {
			body := doc[:len(doc)-1]
			if g.split.IntN(100) < criSplitPercent {
				cut := 1 + g.split.IntN(len(body)-1)
				out = appendCRI(out, t, 'P', body[:cut])
				// The F piece is written a little later by the runtime.
				out = appendCRI(out, t.Add(time.Duration(1+g.split.IntN(999))*time.Microsecond), 'F', body[cut:])
				g.stats.PhysicalLines += 2
				g.stats.Partial++
			} else {
				out = appendCRI(out, t, 'F', body)
				g.stats.PhysicalLines++
			}
		}
		m, err := bw.Write(out)
		n += int64(m)
		if err != nil {
			return Stats{}, err
		}
	}
	if err := bw.Flush(); err != nil {
		return Stats{}, err
	}
	g.stats.Bytes = n
	return g.stats, nil
}

func appendCRI(b []byte, t time.Time, tag byte, body []byte) []byte {
	b = t.AppendFormat(b, time.RFC3339Nano)
	b = append(b, " stdout "...)
	b = append(b, tag, ' ')
	b = append(b, body...)
	return append(b, '\n')
}

// A data set on disk: the file and its manifest.
type dataset struct {
	Path     string
	Manifest string
	Stats    Stats
}

// Layout of the work dir.
func jsonDatasetPath(work string) string { return filepath.Join(work, "data", "app.log") }

// criPodDir is a pod log directory in the layout of the kubelet,
// /var/log/pods/<namespace>_<pod>_<uid>/<container>/, below the work dir.
const criPodDir = "var/log/pods/shop_checkout-6d8f9c7b5-x7k2p_0b8e1e9c-3c1a-4e0b-9a57-5d2f7c1e8a11/app"

func criDatasetPath(work string) string {
	return filepath.Join(work, filepath.FromSlash(criPodDir), "0.log")
}

// ensureDataset generates the data set of kind with lines records in the
// work dir, or reuses the one there when its manifest matches.
func ensureDataset(work, kind string, lines int64, logf func(string, ...any)) (dataset, error) {
	var d dataset
	switch kind {
	case "json":
		d.Path = jsonDatasetPath(work)
	case "json-short":
		d.Path = filepath.Join(work, "data", "app-short.log")
	case "cri":
		d.Path = criDatasetPath(work)
	default:
		return d, fmt.Errorf("unknown data set kind %q", kind)
	}
	d.Manifest = filepath.Join(work, "data", kind+".manifest.json")
	if b, err := os.ReadFile(d.Manifest); err == nil {
		var s Stats
		if json.Unmarshal(b, &s) == nil && s.Version == genVersion && s.Kind == kind && s.Records == lines {
			if fi, err := os.Stat(d.Path); err == nil && fi.Size() == s.Bytes {
				d.Stats = s
				return d, nil
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(d.Path), 0o755); err != nil {
		return d, err
	}
	if err := os.MkdirAll(filepath.Dir(d.Manifest), 0o755); err != nil {
		return d, err
	}
	_ = os.Remove(d.Manifest)
	start := time.Now()
	f, err := os.Create(d.Path)
	if err != nil {
		return d, err
	}
	s, err := writeDataset(f, kind, lines)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return d, fmt.Errorf("generate %s: %w", d.Path, err)
	}
	b, _ := json.MarshalIndent(s, "", "  ")
	if err := os.WriteFile(d.Manifest, append(b, '\n'), 0o644); err != nil {
		return d, err
	}
	d.Stats = s
	logf("generated %s: %d records, %.1f MiB in %.1fs", d.Path, s.Records, float64(s.Bytes)/(1<<20), time.Since(start).Seconds())
	return d, nil
}
