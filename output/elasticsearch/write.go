package elasticsearch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/klauspost/compress/gzip"

	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/output"
)

// Write implements output.Output. It splits the batch into requests of at
// most max_request_bytes (uncompressed), sends up to max_in_flight of them
// at once (the bound is per output, shared by concurrent Writes), and
// classifies the results:
//
//   - per item: 2xx delivered; 409 delivered for op_type create (the
//     document is already there); 429 throttled and 5xx retryable, each
//     retried alone; any other 4xx permanent with Elasticsearch's
//     error.type and error.reason (caused_by too), for the dead-letter file;
//   - per request: connection errors, timeouts, 5xx and any 4xx but 413 and
//     429 are retryable (a whole batch is never dead-lettered for bad
//     credentials or a proxy's answer), 429 throttled honouring Retry-After;
//     413 (body too large) splits the request in two and sends each half, a
//     single record still too large being permanent.
//
// It returns nil when every record was delivered, the whole-request error
// when every record failed the same way, else a *output.BatchError.
func (o *Output) Write(ctx context.Context, batch [][]byte) error {
	if len(batch) == 0 {
		return nil
	}
	srv, err := o.ready(ctx)
	if err != nil {
		return err
	}
	res := &result{srv: srv}
	var ranges [][2]int
	lo, size := 0, 0
	for i, r := range batch {
		if i > lo && size+len(r) > o.maxBytes {
			ranges = append(ranges, [2]int{lo, i})
			lo, size = i, 0
		}
		size += len(r)
	}
	ranges = append(ranges, [2]int{lo, len(batch)})

	var wg sync.WaitGroup
	for _, rg := range ranges {
		select {
		case o.sem <- struct{}{}:
		case <-ctx.Done():
			res.failRange(rg[0], rg[1], ctx.Err())
			continue
		}
		if len(ranges) == 1 {
			o.send(ctx, batch, rg[0], rg[1], res)
			<-o.sem
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-o.sem }()
			o.send(ctx, batch, rg[0], rg[1], res)
		}()
	}
	wg.Wait()
	return res.err(len(batch))
}

// result collects per-record failures of one Write.
type result struct {
	srv    *serverInfo
	mu     sync.Mutex
	failed map[int]error
	whole  error // the error of the first whole-range failure
	same   bool  // every failure so far is whole
}

func (r *result) fail(i int, err error) {
	r.mu.Lock()
	if r.failed == nil {
		r.failed = map[int]error{}
	}
	r.failed[i] = err
	r.same = false
	r.mu.Unlock()
}

func (r *result) failRange(lo, hi int, err error) {
	r.mu.Lock()
	if r.failed == nil {
		r.failed = map[int]error{}
		r.whole, r.same = err, true
	} else if r.same && r.whole != err {
		r.same = false
	}
	for i := lo; i < hi; i++ {
		r.failed[i] = err
	}
	r.mu.Unlock()
}

func (r *result) err(n int) error {
	if len(r.failed) == 0 {
		return nil
	}
	if r.same && len(r.failed) == n {
		return r.whole
	}
	return &output.BatchError{Failed: r.failed}
}

// send delivers batch[lo:hi] in one request, splitting on 413.
func (o *Output) send(ctx context.Context, batch [][]byte, lo, hi int, res *result) {
	status, items, err := o.bulk(ctx, batch[lo:hi], res.srv)
	if err != nil {
		res.failRange(lo, hi, err)
		return
	}
	switch {
	case status == http.StatusRequestEntityTooLarge:
		if hi-lo == 1 {
			res.fail(lo, output.PermanentError(items.wholeErr))
			return
		}
		mid := lo + (hi-lo)/2
		o.send(ctx, batch, lo, mid, res)
		o.send(ctx, batch, mid, hi, res)
		return
	case items.wholeErr != nil:
		res.failRange(lo, hi, items.wholeErr)
		return
	}
	for k, it := range items.items {
		if e := it.classify(o.kind, actionIndex(batch[lo+k])); e != nil {
			res.fail(lo+k, e)
		}
	}
}

// bulkItems is the outcome of a bulk request that got an answer.
type bulkItems struct {
	wholeErr error // a classified error for the whole request
	items    []bulkItem
}

// bulk sends recs as one _bulk request. err is set for errors that are not
// an HTTP answer (connection, timeout); a non-2xx answer sets
// items.wholeErr.
func (o *Output) bulk(ctx context.Context, recs [][]byte, srv *serverInfo) (int, bulkItems, error) {
	bp := o.getBuf()
	defer o.putBuf(bp)
	var body []byte
	if o.gzip {
		// the records go through the compressor one by one: the
		// uncompressed body is never built
		z := bytes.NewBuffer((*bp)[:0])
		gw, _ := o.gzips.Get().(*gzip.Writer)
		if gw == nil {
			gw, _ = gzip.NewWriterLevel(z, gzip.BestSpeed)
		} else {
			gw.Reset(z)
		}
		for _, r := range recs {
			_, _ = gw.Write(r)
		}
		_ = gw.Close()
		o.gzips.Put(gw)
		body = z.Bytes()
	} else {
		body = (*bp)[:0]
		for _, r := range recs {
			body = append(body, r...)
		}
	}
	*bp = body

	rctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	hdr := http.Header{"Content-Type": {"application/x-ndjson"}}
	if o.gzip {
		hdr["Content-Encoding"] = []string{"gzip"}
	}
	path := "/_bulk"
	if o.cfg.Mode == "data_stream" && srv.requireDataStream {
		// A request parameter, not an action-line key: buffered records
		// stay valid for any server, and only servers that know it get it.
		path += "?require_data_stream=true"
	}
	resp, err := o.perform(rctx, http.MethodPost, path, hdr, body)
	if err != nil {
		err0 := err
		if ctx.Err() != nil {
			return 0, bulkItems{}, ctx.Err()
		}
		if rctx.Err() != nil {
			return 0, bulkItems{}, fmt.Errorf("%s: bulk request of %d documents timed out after %s", o.kind, len(recs), o.cfg.Timeout)
		}
		err = fmt.Errorf("%s: bulk request: %s", o.kind, o.redact(err.Error()))
		if r := transportReason(err0); r != "server_unreachable" {
			// A configuration problem: the output waits as blocked with
			// the reason, instead of counting failed attempts.
			err = delivery.Blocked(r, err)
		}
		return 0, bulkItems{}, err
	}
	defer resp.Body.Close()
	rp := o.getBuf()
	defer o.putBuf(rp)
	rb := bytes.NewBuffer((*rp)[:0])
	_, rerr := rb.ReadFrom(io.LimitReader(resp.Body, 256<<20))
	*rp = rb.Bytes()
	if rerr != nil {
		if ctx.Err() != nil {
			return 0, bulkItems{}, ctx.Err()
		}
		return 0, bulkItems{}, fmt.Errorf("%s: reading the bulk response: %s", o.kind, o.redact(rerr.Error()))
	}
	status := resp.StatusCode
	if status < 200 || status > 299 {
		return status, bulkItems{wholeErr: o.requestError(status, resp.Header, rb.Bytes(), len(recs))}, nil
	}
	items, err := parseBulkResponse(rb.Bytes(), len(recs))
	if err != nil {
		return status, bulkItems{wholeErr: err}, nil
	}
	return status, bulkItems{items: items}, nil
}

// bulkItem is one entry of a _bulk response's items.
type bulkItem struct {
	op     string
	Index  string          `json:"_index"`
	ID     string          `json:"_id"`
	Status int             `json:"status"`
	Error  json.RawMessage `json:"error"`
}

// parseBulkResponse returns the items of a 2xx _bulk answer; nil items and
// no error when "errors" is false.
func parseBulkResponse(body []byte, n int) ([]bulkItem, error) {
	if v, ok := topLevelErrors(body); ok && !v {
		return nil, nil
	}
	var r struct {
		Errors bool                         `json:"errors"`
		Items  []map[string]json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("elasticsearch: unreadable bulk response: %v", err)
	}
	if len(r.Items) != n {
		return nil, fmt.Errorf("elasticsearch: bulk response has %d items for %d documents", len(r.Items), n)
	}
	items := make([]bulkItem, n)
	for i, m := range r.Items {
		for op, raw := range m {
			if err := json.Unmarshal(raw, &items[i]); err != nil {
				return nil, fmt.Errorf("elasticsearch: unreadable bulk response item %d: %v", i, err)
			}
			items[i].op = op
		}
	}
	return items, nil
}

// topLevelErrors finds the value of the first "errors" key of a _bulk
// answer (Elasticsearch writes it before "items"; the byte sequence "errors"
// between unescaped quotes followed by ':' can only be a key).
func topLevelErrors(body []byte) (value, ok bool) {
	i := bytes.Index(body, []byte(`"errors"`))
	if i < 0 {
		return false, false
	}
	rest := bytes.TrimLeft(body[i+len(`"errors"`):], " \t\r\n")
	if len(rest) == 0 || rest[0] != ':' {
		return false, false
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	switch {
	case bytes.HasPrefix(rest, []byte("false")):
		return false, true
	case bytes.HasPrefix(rest, []byte("true")):
		return true, true
	}
	return false, false
}

func (o *Output) getBuf() *[]byte {
	if p, _ := o.bufs.Get().(*[]byte); p != nil {
		return p
	}
	b := make([]byte, 0, 64<<10)
	return &b
}

func (o *Output) putBuf(p *[]byte) {
	if cap(*p) > 4*o.maxBytes+(1<<20) {
		return
	}
	*p = (*p)[:0]
	o.bufs.Put(p)
}
