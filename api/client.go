package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// DefaultAddress is api.address's default, where `sidelog tap` connects
// unless told otherwise.
const DefaultAddress = "127.0.0.1:2020"

// TapOptions say what `sidelog tap` watches.
type TapOptions struct {
	Address string // the agent's api.address (0.0.0.0 and :: mean this host's loopback)
	Input   string // watch an input's records (after its parser) ...
	Output  string // ... or the records routed to an output
	When    string // optional condition (expr-lang), compiled by the agent
	Limit   int    // stop after this many records (0: until ctx is done)
}

// Tap connects to a running agent and copies the records passing the chosen
// point to records, one JSON object per line; notices (records dropped
// because this client was too slow) go to notices. It returns nil when ctx
// is done, after Limit records, or when the agent ends the stream.
func Tap(ctx context.Context, o TapOptions, records, notices io.Writer) error {
	u, err := tapURL(o)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("cannot reach the agent at %s: %w", o.Address, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("the agent refused: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if bytes.HasPrefix(line, []byte(tapNoticeKey)) {
				var n struct {
					T struct {
						Dropped uint64 `json:"dropped"`
					} `json:"sidelog_tap"`
				}
				if json.Unmarshal(line, &n) == nil && n.T.Dropped > 0 {
					fmt.Fprintf(notices, "sidelog tap: %d records dropped: this client reads too slowly\n", n.T.Dropped)
				}
			} else if _, werr := records.Write(line); werr != nil {
				return werr
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("tap stream: %w", err)
		}
	}
}

func tapURL(o TapOptions) (string, error) {
	if (o.Input == "") == (o.Output == "") {
		return "", errors.New("give --input NAME or --output NAME (one of them)")
	}
	addr := o.Address
	if addr == "" {
		addr = DefaultAddress
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("address %q: %w", addr, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::", "[::]":
		host = "::1"
	}
	q := url.Values{}
	if o.Input != "" {
		q.Set("input", o.Input)
	} else {
		q.Set("output", o.Output)
	}
	if o.When != "" {
		q.Set("when", o.When)
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(host, port), Path: "/tap", RawQuery: q.Encode()}
	return u.String(), nil
}

const tapUsage = `usage: sidelog tap (--input NAME | --output NAME) [--when EXPR] [--limit N] [--address ADDR]

Streams, one JSON object per line, the records passing an input (after its
parser) or routed to an output, from a running agent whose config has
api.tap: true. Ctrl-C stops.
`

// TapCommand is `sidelog tap`: it parses args, streams to stdout until
// SIGINT/SIGTERM or --limit, and returns the exit code (0 ok, 1 error, 2
// usage).
func TapCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, tapUsage); fs.PrintDefaults() }
	var o TapOptions
	fs.StringVar(&o.Input, "input", "", "watch this input's records (after its parser)")
	fs.StringVar(&o.Output, "output", "", "watch the records routed to this output")
	fs.StringVar(&o.When, "when", "", "only records for which this expression is true")
	fs.IntVar(&o.Limit, "limit", 0, "stop after this many records (0: until Ctrl-C)")
	fs.StringVar(&o.Address, "address", DefaultAddress, "the agent's api.address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || (o.Input == "") == (o.Output == "") {
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	w := bufio.NewWriter(stdout)
	err := Tap(ctx, o, flushEachLine{w}, stderr)
	w.Flush()
	if err != nil {
		fmt.Fprintln(stderr, "sidelog tap:", err)
		return 1
	}
	return 0
}

// flushEachLine flushes after each record so that a pipe (| jq) sees it at
// once.
type flushEachLine struct{ w *bufio.Writer }

func (f flushEachLine) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.w.Flush()
	}
	return n, err
}
