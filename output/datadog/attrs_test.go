package datadog

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/output/datadog/ddtest"
)

// With message_key the field is the message and the other fields are
// attributes (as Fluent Bit's dd_message_key and Vector send them). The
// reserved attributes come from the templates, else from the record's
// fields of the same name; status from the level field by default. A field
// whose name the entry already uses is kept as record_<name>.
func TestMessageKey(t *testing.T) {
	srv := ddtest.New(testKey)
	defer srv.Close()
	o := newOutput(t, srv, func(c *Config) {
		c.MessageKey = "msg"
		c.Hostname = "" // the default: a record's own hostname wins
		c.Source = "app"
	})
	now := time.Now().Truncate(time.Millisecond)
	evs := []*event.Event{
		jsonEvent(t, `{"msg":"order placed","level":"WARN","service":"checkout","user":{"id":7},"status":200,"timestamp":"2026-12-03T10:00:00Z","hostname":"web-1","ddtags":"team:a","ddsource":"ignored?"}`, now),
		jsonEvent(t, `{"msg":42,"level":"info"}`, now),
		jsonEvent(t, `{"other":"no message field","message":"a field named message"}`, now),
		{Raw: []byte("an unparsed line"), Time: now},
	}
	if err := o.Write(context.Background(), encode(t, o, evs...)); err != nil {
		t.Fatal(err)
	}
	got := srv.Entries()
	if len(got) != 4 {
		t.Fatalf("%d entries", len(got))
	}
	e := got[0]
	if e.Message != "order placed" || e.Service != "checkout" || e.Status != "warn" || e.Hostname != "web-1" || e.Ddtags != "team:a" || e.Ddsource != "app" || e.Timestamp != now.UnixMilli() {
		t.Errorf("entry 0 %+v", e)
	}
	// status (the level gave it), timestamp and ddsource (a template set
	// it) are kept under record_; service, hostname and ddtags became the
	// reserved attributes.
	if want := `{"level":"WARN","record_ddsource":"ignored?","record_status":200,"record_timestamp":"2026-12-03T10:00:00Z","user":{"id":7}}`; e.Attributes != want {
		t.Errorf("attributes\n%s\nwant\n%s", e.Attributes, want)
	}
	if e := got[1]; e.Message != "42" || e.Status != "info" || e.Attributes != `{"level":"info"}` {
		t.Errorf("entry 1 %+v", e)
	}
	if e := got[2]; e.Message != "" || e.Attributes != `{"other":"no message field","record_message":"a field named message"}` {
		t.Errorf("entry 2 %+v", e)
	}
	if e := got[3]; e.Message != "an unparsed line" || e.Attributes != "" {
		t.Errorf("entry 3 %+v", e)
	}
	// Every entry's size was computed exactly (the limits hold to the byte).
	for i, rec := range encode(t, o, evs...) {
		var ent entry
		if err := decodeFrame(rec, &ent); err != nil {
			t.Fatal(err)
		}
		o.stamp(&ent, now, got[i].Timestamp)
		if ent.size != got[i].Size {
			t.Errorf("entry %d: computed %d bytes, sent %d", i, ent.size, got[i].Size)
		}
	}
	if keys, all := o.Keys(); !all {
		t.Errorf("Keys() = %v, false: message_key needs every field", keys)
	}
	if v := srv.Violations(); len(v) > 0 {
		t.Fatal(v)
	}
}

// A template wins over the record's field, which is kept as record_<name>.
func TestMessageKeyTemplateWins(t *testing.T) {
	srv := ddtest.New(testKey)
	defer srv.Close()
	o := newOutput(t, srv, func(c *Config) { c.MessageKey = "log"; c.Service = "{{ app }}"; c.Tags = []string{"env:prod"} })
	e := jsonEvent(t, `{"log":"x","app":"api","service":"old","ddtags":"team:b","hostname":"h"}`, time.Now())
	if err := o.Write(context.Background(), encode(t, o, e)); err != nil {
		t.Fatal(err)
	}
	g := srv.Entries()[0]
	if g.Service != "api" || g.Ddtags != "env:prod,team:b" || g.Hostname != "node-1" {
		t.Errorf("entry %+v", g)
	}
	if want := `{"app":"api","record_hostname":"h","record_service":"old"}`; g.Attributes != want {
		t.Errorf("attributes %s, want %s", g.Attributes, want)
	}
}

// A message over the entry limit is cut, the attributes kept; attributes
// that fill the entry by themselves make the record go as JSON in message,
// cut as without message_key. Either way the entry stays under 1 MB and is
// flagged.
func TestMessageKeyTruncation(t *testing.T) {
	srv := ddtest.New(testKey)
	defer srv.Close()
	o := newOutput(t, srv, func(c *Config) { c.MessageKey = "msg" })
	long := strings.Repeat("é<", MaxEntryBytes/2)
	evs := []*event.Event{
		jsonEvent(t, `{"msg":"`+long+`","user":"u1"}`, time.Now()),
		jsonEvent(t, `{"msg":"short","blob":"`+long+`"}`, time.Now()),
	}
	if err := o.Write(context.Background(), encode(t, o, evs...)); err != nil {
		t.Fatal(err)
	}
	got := srv.Entries()
	if g := got[0]; !g.Truncated || g.Size > MaxEntryBytes || g.Size < MaxEntryBytes-256 || g.Attributes != `{"user":"u1"}` || !strings.HasPrefix(g.Message, "é<é<") {
		t.Errorf("cut message: truncated %v, %d bytes, attributes %s", g.Truncated, g.Size, g.Attributes)
	}
	if g := got[1]; !g.Truncated || g.Size > MaxEntryBytes || g.Attributes != "" || !strings.HasPrefix(g.Message, `{"blob":`) {
		t.Errorf("huge attributes: truncated %v, %d bytes, attributes %.40s, message %.40s", g.Truncated, g.Size, g.Attributes, g.Message)
	}
	if st := o.Stats(); st.Truncated != 2 {
		t.Errorf("stats %+v", st)
	}
	if v := srv.Violations(); len(v) > 0 {
		t.Fatal(v)
	}
}
