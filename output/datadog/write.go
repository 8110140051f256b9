package datadog

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/output"
)

type scratch struct {
	ents  []entry
	body  []byte // the request body (compressed when gzip is on)
	chunk []byte // uncompressed part of the body not yet compressed
	z     bytes.Buffer
}

// Write sends the batch in requests of at most MaxEntries entries and
// MaxRequestBytes bytes. Each request's records share its outcome; the
// result is nil when all were accepted, else a *output.BatchError with the
// classified error of each failed record.
func (o *Output) Write(ctx context.Context, batch [][]byte) error {
	s := o.scratch.Get().(*scratch)
	defer func() {
		clear(s.ents) // drop the strings that alias batch
		o.scratch.Put(s)
	}()
	now := o.now()
	if err := o.authBlocked(now); err != nil {
		return err
	}
	failed := map[int]error{}
	s.ents = s.ents[:0]
	nowMs := now.UnixMilli()
	for i, rec := range batch {
		var ent entry
		if err := decodeFrame(rec, &ent); err != nil {
			failed[i] = output.PermanentError(err)
			continue
		}
		ent.idx = i
		o.stamp(&ent, now, nowMs)
		if ent.retimed == -1 {
			switch o.cfg.TooOld {
			case TooOldDeadLetter:
				o.tooOldDead.Add(1)
				failed[i] = output.PermanentError(tooOldError(ent.unixNano, now))
				continue
			case TooOldDrop:
				o.tooOldDropped.Add(1)
				continue
			}
		}
		s.ents = append(s.ents, ent)
	}
	// Group into requests and send them in order. After an error that says
	// "not now" (throttled, auth, server, transport), the rest of the batch
	// is not sent and fails with the same error.
	var stop error
	for from := 0; from < len(s.ents); {
		to, size := from, 3 // [ ] and the encoder's newline
		for to < len(s.ents) && to-from < MaxEntries {
			add := s.ents[to].size
			if to > from {
				add++ // comma
			}
			if size+add > MaxRequestBytes {
				break
			}
			size += add
			to++
		}
		group := s.ents[from:to]
		if stop != nil {
			for _, ent := range group {
				failed[ent.idx] = stop
			}
		} else {
			stop = o.send(ctx, s, group, failed)
		}
		from = to
	}
	if len(failed) == 0 {
		return nil
	}
	return &output.BatchError{Failed: failed}
}

// ReasonTooOld starts the dead-letter reason of a record older than the
// intake accepts (too_old: dead_letter).
const ReasonTooOld = "older than the intake accepts"

func tooOldError(unixNano int64, now time.Time) error {
	t := time.Unix(0, unixNano).UTC()
	return fmt.Errorf("datadog: %s: event time %s is %s old; the intake keeps at most 18h (too_old: dead_letter; replay with too_old: redate to send it with the current time)",
		ReasonTooOld, t.Format(originalLayout), now.Sub(t).Round(time.Second))
}

// authBlocked returns the blocked error of the last 401/403 while
// auth_error_backoff has not passed since.
func (o *Output) authBlocked(now time.Time) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.authErr != nil && now.Before(o.authUntil) {
		return o.authErr
	}
	return nil
}

// stamp decides the timestamp sent and computes the entry's JSON size. An
// entry older than MaxPast gets retimed -1 (Write applies too_old), one
// further than MaxFuture ahead +1; a re-dated entry carries
// original_timestamp and the redated tag.
func (o *Output) stamp(ent *entry, now time.Time, nowMs int64) {
	ent.timestamp, ent.original, ent.retimed = nowMs, false, 0
	if ent.unixNano != 0 {
		t := time.Unix(0, ent.unixNano)
		switch {
		case now.Sub(t) > MaxPast:
			ent.original, ent.retimed = true, -1
		case t.Sub(now) > MaxFuture:
			ent.original, ent.retimed = true, +1
		default:
			ent.timestamp = t.UnixMilli()
		}
	}
	n := 2 + kMessage + ent.msgJSON + kTimestamp + intLen(ent.timestamp)
	fields := 2
	for _, f := range [...]struct {
		v string
		k int
	}{{ent.service, kService}, {ent.source, kSource}, {ent.hostname, kHost}, {ent.status, kStatus}} {
		if f.v != "" {
			n += f.k + jsonLen(f.v)
			fields++
		}
	}
	switch {
	case ent.tags != "" && ent.original:
		n += kTags + jsonLen(ent.tags) + 1 + len(redatedTag)
		fields++
	case ent.tags != "":
		n += kTags + jsonLen(ent.tags)
		fields++
	case ent.original:
		n += kTags + 2 + len(redatedTag)
		fields++
	}
	if ent.attrs != "" {
		n += len(ent.attrs)
		fields++
	}
	if ent.original {
		n += kOriginal + originalLen
		fields++
	}
	if ent.flags&flagTruncated != 0 {
		n += kTruncated + len("true")
		fields++
	}
	ent.size = n + fields - 1
}

const originalLayout = "2006-01-02T15:04:05.000Z07:00"

// send posts one request and records the failure of its entries in failed.
// It returns non-nil when the rest of the batch should not be sent now.
func (o *Output) send(ctx context.Context, s *scratch, ents []entry, failed map[int]error) error {
	body, _ := s.makeBody(ents, o.gzip)
	var wrote atomic.Bool
	rctx := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				wrote.Store(true)
			}
		},
	})
	resp, answer, err := o.post(rctx, body)
	o.requests.Add(1)
	fail := func(e error) {
		for _, ent := range ents {
			failed[ent.idx] = e
		}
	}
	if resp != nil && resp.StatusCode/100 == 2 {
		size := 3
		for i, ent := range ents {
			size += ent.size
			if i > 0 {
				size++
			}
			switch ent.retimed {
			case -1:
				o.retimedOld.Add(1)
			case +1:
				o.retimedFuture.Add(1)
			}
		}
		o.delivered.Add(int64(len(ents)))
		o.deliveredBytes.Add(int64(size))
		if o.setState(StateOK, "") {
			o.log.Info("datadog intake accepts records")
		}
		return nil
	}
	if resp == nil {
		o.transportErrors.Add(1)
		msg := "request failed"
		if wrote.Load() {
			// The intake may have taken the request: it is retried and its
			// entries may arrive twice.
			o.dups.Add(int64(len(ents)))
			msg = "no answer to a sent request (outcome unknown, retried: possible duplicates)"
		}
		var e error = fmt.Errorf("datadog: %s: %s", msg, o.redact(errString(err)))
		if output.IsTLSError(err) {
			// A certificate the output does not trust: tls.ca_file.
			e = delivery.Blocked(ReasonTLSError, e)
		}
		fail(e)
		if ctx.Err() == nil {
			o.setState(StateError, e.Error())
		}
		return e
	}
	code := resp.StatusCode
	reason := o.reason(resp, answer)
	switch {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		// A configuration problem: the records stay in the buffer, the
		// output shows as blocked (reason auth_error) and sends nothing
		// before auth_error_backoff has passed.
		o.authErrors.Add(1)
		e := delivery.Blocked(ReasonAuthError, fmt.Errorf("datadog: API key refused (%s); no request before %s: %s", authHint(code), o.cfg.AuthErrorBackoff, reason))
		o.mu.Lock()
		o.authUntil, o.authErr = o.now().Add(o.cfg.AuthErrorBackoff), e
		o.mu.Unlock()
		if o.setState(StateAuthError, e.Error()) {
			o.log.Error("datadog refused the API key; retrying", "answer", reason, "retry_in", o.cfg.AuthErrorBackoff.String())
		}
		fail(e)
		return e
	case code == http.StatusRequestEntityTooLarge && len(ents) > 1:
		o.splits.Add(1)
		h := len(ents) / 2
		if stop := o.send(ctx, s, ents[:h], failed); stop != nil {
			for _, ent := range ents[h:] {
				failed[ent.idx] = stop
			}
			return stop
		}
		return o.send(ctx, s, ents[h:], failed)
	case code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge:
		o.rejected.Add(int64(len(ents)))
		e := output.PermanentError(fmt.Errorf("datadog: intake refused %d entries: %s", len(ents), reason))
		o.log.Warn("datadog refused records; they go to the dead-letter file", "entries", len(ents), "answer", reason)
		fail(e)
		return nil
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		after := retryAfter(resp.Header.Get("Retry-After"), o.now())
		var e error = fmt.Errorf("datadog: %s", reason)
		if code == http.StatusBadGateway || code == http.StatusGatewayTimeout {
			// A gateway's answer: the intake behind it may have taken the
			// request. Retried, so its entries may arrive twice.
			o.dups.Add(int64(len(ents)))
			e = fmt.Errorf("datadog: %s (a gateway's answer: outcome unknown, retried: possible duplicates)", reason)
		}
		state := StateError
		if code >= 500 {
			o.serverErrors.Add(1)
		} else {
			o.throttled.Add(1)
			state = StateThrottled
		}
		if code < 500 || after > 0 {
			e = output.ThrottledError(e, after)
		}
		o.setState(state, e.Error())
		fail(e)
		return e
	default:
		// Other answers (404 from a wrong endpoint, 3xx, ...) are retried:
		// a configuration problem must not send every record to the
		// dead-letter file. Status shows it.
		e := fmt.Errorf("datadog: unexpected answer: %s", reason)
		if o.setState(StateError, e.Error()) {
			o.log.Error("datadog: unexpected answer; retrying", "answer", reason)
		}
		fail(e)
		return e
	}
}

// Blocked reasons of the output (delivery.Blocked).
const (
	ReasonAuthError = "auth_error" // 401/403: the API key is missing, wrong or lacks permission
	ReasonTLSError  = "tls_error"  // the intake's (or proxy's) certificate is not trusted
)

func authHint(code int) string {
	if code == http.StatusUnauthorized {
		return "401: missing API key"
	}
	return "403: invalid API key or no permission"
}

// post sends one request body (already gzip-compressed when o.gzip) to the
// intake as the official client's LogsApi.SubmitLog does (intake.go), and
// returns the answer and its body (read and closed), or the transport
// error. Retries are the delivery loop's.
func (o *Output) post(ctx context.Context, body []byte) (*http.Response, []byte, error) {
	req, err := newIntakeRequest(ctx, o.url, o.cfg.APIKey, o.ua, o.gzip, body)
	if err != nil {
		return nil, nil, err
	}
	resp, err := o.client.Do(req)
	if err != nil || resp == nil {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, nil, err
	}
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		// The status arrived: the answer is known even if its body is not.
		answer = nil
	}
	return resp, answer, nil
}

func errString(err error) string {
	if err == nil {
		return "no response"
	}
	return err.Error()
}

// reason describes an answer: status line and the start of its body, with
// the API key redacted before anything is cut.
func (o *Output) reason(resp *http.Response, body []byte) string {
	b := strings.TrimSpace(o.redact(string(body[:min(len(body), 4096)])))
	if len(b) > 300 {
		b = strings.ToValidUTF8(b[:300], "") + "..."
	}
	r := resp.Status
	if b != "" {
		r += ": " + b
	}
	return r
}

// retryAfter parses Retry-After (seconds or an HTTP date).
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, 3600)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d, time.Hour)
		}
	}
	return 0
}
