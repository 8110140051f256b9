package datadog

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/output"
	"github.com/sidelog/sidelog/output/datadog/ddtest"
)

// too_old decides what happens to a record older than the intake accepts:
// dead_letter (permanent, with the reason), redate (sent now, its own time
// in original_timestamp, tagged), drop (counted). Recent records go out
// with their own time whatever the choice; none reaches the intake's stale
// list.
func TestTooOld(t *testing.T) {
	now := time.Now()
	old := now.Add(-20 * time.Hour).Truncate(time.Millisecond)
	recent := now.Add(-time.Hour).Truncate(time.Millisecond)
	for _, mode := range []string{TooOldDeadLetter, TooOldRedate, TooOldDrop} {
		t.Run(mode, func(t *testing.T) {
			srv := ddtest.New(testKey)
			defer srv.Close()
			o := newOutput(t, srv, func(c *Config) { c.TooOld = mode; c.Tags = []string{"env:test"} })
			recs := encode(t, o, jsonEvent(t, `{"n":1}`, old), jsonEvent(t, `{"n":2}`, recent), jsonEvent(t, `{"n":3}`, old))
			err := o.Write(context.Background(), recs)
			got := srv.Entries()
			st := o.Stats()
			switch mode {
			case TooOldDeadLetter:
				var be *output.BatchError
				if !errors.As(err, &be) || len(be.Failed) != 2 || be.Failed[0] == nil || be.Failed[2] == nil {
					t.Fatalf("want records 0 and 2 failed, got %v", err)
				}
				for _, i := range []int{0, 2} {
					if c, _ := output.Classify(be.Failed[i]); c != output.Permanent || !strings.Contains(be.Failed[i].Error(), ReasonTooOld) || !strings.Contains(be.Failed[i].Error(), "20h0m") {
						t.Errorf("record %d: %v (%v)", i, be.Failed[i], c)
					}
				}
				if len(got) != 1 || got[0].Message != `{"n":2}` || st.TooOldDead != 2 {
					t.Fatalf("entries %+v, stats %+v", got, st)
				}
			case TooOldRedate:
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != 3 || st.RetimedOld != 2 {
					t.Fatalf("entries %+v, stats %+v", got, st)
				}
				for _, i := range []int{0, 2} {
					ot, _ := time.Parse(time.RFC3339Nano, got[i].OriginalTimestamp)
					if !ot.Equal(old) || got[i].Ddtags != "env:test,sidelog_redated:true" || got[i].Timestamp < now.UnixMilli() {
						t.Errorf("re-dated entry %+v", got[i])
					}
				}
				if got[1].Ddtags != "env:test" || got[1].Timestamp != recent.UnixMilli() {
					t.Errorf("recent entry %+v", got[1])
				}
			case TooOldDrop:
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != 1 || got[0].Message != `{"n":2}` || st.TooOldDropped != 2 {
					t.Fatalf("entries %+v, stats %+v", got, st)
				}
				for _, c := range o.Counts() {
					if c.Name == "too_old_dropped" && (c.Value != 2 || !c.Dropped) {
						t.Errorf("count %+v", c)
					}
				}
			}
			if s := srv.Stale(); len(s) != 0 {
				t.Errorf("%d entries the intake would drop silently", len(s))
			}
		})
	}
}

// A gateway's 502 or 504 may come after the intake took the request: the
// entries are retried and counted as possible duplicates. A 500 or 503 is
// the intake's own refusal: not counted.
func TestGatewayAnswersArePossibleDuplicates(t *testing.T) {
	srv := ddtest.New(testKey)
	defer srv.Close()
	o := newOutput(t, srv, nil)
	recs := encode(t, o, jsonEvent(t, `{"a":1}`, time.Now()), jsonEvent(t, `{"a":2}`, time.Now()))
	srv.Inject(ddtest.Fault{Status: 502, Store: true}, ddtest.Fault{Status: 504, Store: true}, ddtest.Fault{Status: 500}, ddtest.Fault{Status: 503})
	for i, code := range []string{"502", "504", "500", "503"} {
		err := o.Write(context.Background(), recs)
		if err == nil || !strings.Contains(err.(*output.BatchError).Failed[0].Error(), code) {
			t.Fatalf("answer %s: %v", code, err)
		}
		want := int64(2 * min(i+1, 2))
		if st := o.Stats(); st.PossibleDuplicates != want {
			t.Fatalf("after %s: %d possible duplicates, want %d", code, st.PossibleDuplicates, want)
		}
	}
	if err := o.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	// The intake holds each record three times: the two gateway answers
	// were possible duplicates indeed, and counted as such.
	if n := len(srv.Entries()); n != 6 {
		t.Fatalf("%d entries, want 6", n)
	}
	for _, c := range o.Counts() {
		if c.Name == "possible_duplicates" && c.Value != 4 {
			t.Errorf("count %+v", c)
		}
	}
}

// A request that times out after it was written may have been taken: its
// entries are possible duplicates.
func TestTimeoutIsPossibleDuplicate(t *testing.T) {
	srv := ddtest.New(testKey)
	defer srv.Close()
	o := newOutput(t, srv, func(c *Config) { c.RequestTimeout = 300 * time.Millisecond })
	recs := encode(t, o, jsonEvent(t, `{"a":1}`, time.Now()))
	srv.Inject(ddtest.Fault{Store: true, Delay: time.Minute})
	if err := o.Write(context.Background(), recs); err == nil {
		t.Fatal("no error after a timeout")
	}
	if st := o.Stats(); st.PossibleDuplicates != 1 || st.TransportErrors != 1 {
		t.Fatalf("stats %+v", st)
	}
	if err := o.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Entries()); n != 2 {
		t.Fatalf("%d entries, want 2 (the timed-out request was taken)", n)
	}
}

// A version-1 frame (buffered before attributes existed, on disk across an
// upgrade) is still sent.
func TestFrameV1StillRead(t *testing.T) {
	srv := ddtest.New(testKey)
	defer srv.Close()
	o := newOutput(t, srv, func(c *Config) { c.Service = "svc" })
	v2 := encode(t, o, jsonEvent(t, `{"a":1}`, time.Now()))[0]
	// A v2 frame without attributes is a v1 frame with an empty
	// attributes section after the five attributes.
	var ent entry
	if err := decodeFrame(v2, &ent); err != nil || ent.attrs != "" {
		t.Fatal(err)
	}
	at := len(v2) - len(ent.msg) - 4
	v1 := append(append([]byte{frameV1}, v2[1:at]...), v2[at+4:]...)
	if err := o.Write(context.Background(), [][]byte{v1}); err != nil {
		t.Fatal(err)
	}
	if e := srv.Entries(); len(e) != 1 || e[0].Message != `{"a":1}` || e[0].Service != "svc" {
		t.Fatalf("entries %+v", e)
	}
	v1[0] = 9
	var be *output.BatchError
	if err := o.Write(context.Background(), [][]byte{v1}); !errors.As(err, &be) {
		t.Fatalf("unknown version: %v", err)
	} else if c, _ := output.Classify(be.Failed[0]); c != output.Permanent {
		t.Fatalf("unknown version: %v", be.Failed[0])
	}
}

// Bad values of the new keys are refused, each naming its key.
func TestValidateNewKeys(t *testing.T) {
	c := DefaultConfig()
	c.APIKey = testKey
	c.TooOld = "keep"
	c.MessageKey = "a.b"
	err := c.Validate()
	for _, want := range []string{"too_old", "must be dead_letter, redate or drop", "message_key"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want %q", err, want)
		}
	}
}
