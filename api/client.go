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

// DefaultAddress is api.address's default.
const DefaultAddress = "127.0.0.1:2020"

// DefaultAdminAddress is where `sidelog tap` and `sidelog reload` connect
// unless told otherwise: the api.admin.address the docs and manifests use.
const DefaultAdminAddress = "127.0.0.1:2021"

// AdminClient reaches the admin listener (api.admin).
type AdminClient struct {
	Address   string // api.admin.address (0.0.0.0 and :: mean this host's loopback)
	Socket    string // api.admin.socket (wins over Address)
	TokenFile string // the file holding api.admin's bearer token, if any
}

// TapOptions say what `sidelog tap` watches.
type TapOptions struct {
	AdminClient
	Input  string // watch an input's records (after its parser) ...
	Output string // ... or the records routed to an output
	When   string // optional condition (expr-lang), compiled by the agent
	Limit  int    // stop after this many records (0: until ctx is done)
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
	resp, err := o.do(ctx, http.MethodGet, u)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
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
						Warning string `json:"warning"`
					} `json:"sidelog_tap"`
				}
				if json.Unmarshal(line, &n) == nil && n.T.Dropped > 0 {
					fmt.Fprintf(notices, "sidelog tap: %d records dropped: this client reads too slowly\n", n.T.Dropped)
				}
				if n.T.Warning != "" {
					fmt.Fprintf(notices, "sidelog tap: WARNING: %s\n", n.T.Warning)
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

// do sends a request to the admin listener, with the bearer token when
// TokenFile is set.
func (c AdminClient) do(ctx context.Context, method, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	if c.TokenFile != "" {
		tok, err := readToken(c.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("token file: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+string(tok))
	}
	client := http.DefaultClient
	where := c.Address
	if c.Socket != "" {
		where = c.Socket
		client = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", c.Socket)
			},
		}}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the agent's admin listener at %s (api.admin): %w", where, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, fmt.Errorf("the agent refused: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return resp, nil
}

// baseURL is the admin listener's URL (a socket's host is a placeholder).
func (c AdminClient) baseURL() (string, error) {
	if c.Socket != "" {
		return "http://sidelog-admin", nil
	}
	addr := c.Address
	if addr == "" {
		addr = DefaultAdminAddress
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
	return "http://" + net.JoinHostPort(host, port), nil
}

// Reload asks the agent to reload its config (POST /-/reload) and returns
// the agent's answer, or why it refused.
func (c AdminClient) Reload(ctx context.Context) (string, error) {
	base, err := c.baseURL()
	if err != nil {
		return "", err
	}
	resp, err := c.do(ctx, http.MethodPost, base+"/-/reload")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return strings.TrimSpace(string(b)), nil
}

// ReplayResult is the agent's answer to a dead-letter replay.
type ReplayResult struct {
	Replayed int    `json:"replayed"`
	Error    string `json:"error"`
}

// Replay asks the agent to send output's dead letters again (POST
// /dead-letter/replay on the admin listener).
func (c AdminClient) Replay(ctx context.Context, output string) (ReplayResult, error) {
	var res ReplayResult
	base, err := c.baseURL()
	if err != nil {
		return res, err
	}
	resp, err := c.do(ctx, http.MethodPost, base+"/dead-letter/replay?output="+url.QueryEscape(output))
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(raw, &res) != nil {
		return res, fmt.Errorf("the running agent answered %s: %s", resp.Status, strings.TrimSpace(string(raw)))
	}
	return res, nil
}

func tapURL(o TapOptions) (string, error) {
	if (o.Input == "") == (o.Output == "") {
		return "", errors.New("give --input NAME or --output NAME (one of them)")
	}
	base, err := o.baseURL()
	if err != nil {
		return "", err
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
	return base + "/tap?" + q.Encode(), nil
}

const tapUsage = `usage: sidelog tap (--input NAME | --output NAME) [--when EXPR] [--limit N]
                  [--address ADDR | --socket PATH] [--token-file FILE]

Streams, one JSON object per line, the records passing an input (after its
parser) or routed to an output, from a running agent whose config has
api.tap: true, through its admin listener (api.admin). Ctrl-C stops.
Input records are shown BEFORE every filter: redact has not run on them.
`

func adminFlags(fs *flag.FlagSet, c *AdminClient) {
	fs.StringVar(&c.Address, "address", DefaultAdminAddress, "the agent's api.admin.address")
	fs.StringVar(&c.Socket, "socket", "", "the agent's api.admin.socket (instead of --address)")
	fs.StringVar(&c.TokenFile, "token-file", "", "file holding the api.admin bearer token (api.admin.token_file)")
}

const reloadUsage = `usage: sidelog reload [--address ADDR | --socket PATH] [--token-file FILE]

Asks a running agent to reload its config (POST /-/reload on its admin
listener, api.admin), as SIGHUP does, and prints the outcome: exit 0 when
the new config runs, 1 when it was refused (the reason is printed; the old
config keeps running).
`

// ReloadCommand is `sidelog reload`.
func ReloadCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("reload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, reloadUsage); fs.PrintDefaults() }
	var c AdminClient
	adminFlags(fs, &c)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	msg, err := c.Reload(context.Background())
	if err != nil {
		fmt.Fprintln(stderr, "sidelog reload:", err)
		return 1
	}
	fmt.Fprintln(stdout, msg)
	return 0
}

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
	adminFlags(fs, &o.AdminClient)
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
