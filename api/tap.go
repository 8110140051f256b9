package api

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/sidelog/sidelog/api/tap"
	"github.com/sidelog/sidelog/expression"
)

// tapNoticeKey starts the stream's notice lines, which are not records:
// {"sidelog_tap":{"dropped":12}} says 12 records were dropped because the
// client read too slowly.
const tapNoticeKey = `{"sidelog_tap":`

// InputTapWarning is the notice that starts every input tap stream.
const InputTapWarning = "input records are shown as parsed, BEFORE every filter: redact has not run on them"

// serveTap streams, as NDJSON, the records passing one point:
//
//	GET /tap?output=NAME[&when=EXPR][&limit=N]
//	GET /tap?input=NAME[&when=EXPR][&limit=N]
//
// The stream ends when the client goes, after limit records, or when the
// server shuts down.
func (s *Server) serveTap(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	in, out := q.Get("input"), q.Get("output")
	var point string
	switch {
	case in != "" && out != "":
		text(w, http.StatusBadRequest, "give input=NAME or output=NAME, not both")
		return
	case in != "":
		point = tap.PointName(tap.KindInput, in)
	case out != "":
		point = tap.PointName(tap.KindOutput, out)
	default:
		text(w, http.StatusBadRequest, "give input=NAME or output=NAME")
		return
	}
	limit := 0
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			text(w, http.StatusBadRequest, "limit: want a number of records")
			return
		}
		limit = n
	}
	var when *expression.Program
	if src := q.Get("when"); src != "" {
		p, err := expression.Compile(src, expression.Bool)
		if err != nil {
			text(w, http.StatusBadRequest, "when: "+err.Error())
			return
		}
		when = p
	}
	if s.opts.Hub == nil {
		text(w, http.StatusServiceUnavailable, "the pipeline is not running yet")
		return
	}
	sub, err := s.opts.Hub.Subscribe(point, when, s.opts.TapBuffer)
	if err != nil {
		text(w, http.StatusNotFound, err.Error())
		return
	}
	defer s.opts.Hub.Unsubscribe(sub)

	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	if in != "" {
		// Said on every input stream, and by `sidelog tap` on stderr:
		// these records have not been through redact.
		fmt.Fprintf(w, "%s{\"warning\":%q}}\n", tapNoticeKey, InputTapWarning)
		if err := rc.Flush(); err != nil {
			return
		}
	}
	s.opts.Logger.Info("tap attached", "point", point, "when", q.Get("when"))
	defer s.opts.Logger.Info("tap detached", "point", point)

	var sent int
	var reported uint64
	buf := make([]byte, 0, 64<<10)
	for {
		select {
		case <-r.Context().Done():
			return
		case line := <-sub.C:
			buf = append(append(buf[:0], line...), '\n')
			sent++
			// Take what else is waiting, up to 64 KiB, before flushing.
		more:
			for len(buf) < 64<<10 && (limit == 0 || sent < limit) {
				select {
				case line := <-sub.C:
					buf = append(append(buf, line...), '\n')
					sent++
				default:
					break more
				}
			}
			if d := sub.Dropped(); d > reported {
				buf = fmt.Appendf(buf, "%s{\"dropped\":%d}}\n", tapNoticeKey, d-reported)
				reported = d
			}
			if _, err := w.Write(buf); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
			if limit > 0 && sent >= limit {
				return
			}
		}
	}
}
