package elasticsearch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/sidelog/sidelog/delivery"
)

// setup: true (the default in data_stream mode) creates a composable index
// template for the output's names when none of its name exists, after the
// start-up probe and before the first bulk request:
//
//	PUT /_index_template/sidelog-<output>?create=true
//	{"index_patterns": ["<the index template as a glob>"], "priority": 200,
//	 "data_stream": {},                       (data_stream mode)
//	 "template": {"mappings": {"properties": {"@timestamp": {"type": "date"}}},
//	              "settings": {"index.lifecycle.name": "<lifecycle>"}},   (if set, Elasticsearch)
//	 "_meta": {"managed_by": "sidelog", "output": "<output>"}}
//
// Without it a data stream's first document creates a plain index of that
// name, which then refuses the data stream for ever. The priority, 200,
// wins over Elasticsearch 8's built-in logs-*-* (100); since templates do
// not merge, a logs-* template on Elasticsearch >= 8 composes the stock
// template's component templates (stockComponents) to keep its mappings
// and lifecycle; a template of the user's at 200 or above on the same names
// wins or collides (the server refuses two templates of equal priority on
// overlapping patterns: a warning, and the output goes on). An existing
// template of that name is left as it is (never overwritten: the user's
// changes stay), if it covers the output's names; a template of that name
// for other names (another agent's output of the same name, writing
// elsewhere) is left too, and this output's is named
// sidelog-<output>-<hash of its index pattern>, with a warning. 403 (no
// manage_index_templates privilege) warns and goes on: the template may
// have been created by someone who has it. No answer retries with the
// probe (the output is blocked meanwhile).

// templatePriority is the priority of the templates setup creates.
const templatePriority = 200

// templateName is the name of the output's index template.
func (o *Output) templateName() string {
	var b strings.Builder
	b.WriteString("sidelog-")
	for _, r := range strings.ToLower(o.name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return b.String()
}

// templateBody is the index template setup creates on server s.
func (o *Output) templateBody(s *serverInfo, lifecycle bool) []byte {
	type props map[string]any
	tpl := props{"mappings": props{"properties": props{"@timestamp": props{"type": "date"}}}}
	if lifecycle {
		tpl["settings"] = props{"index.lifecycle.name": o.cfg.Lifecycle}
	}
	body := props{
		"index_patterns": []string{o.index.Glob()},
		"priority":       templatePriority,
		"template":       tpl,
		"_meta":          props{"managed_by": "sidelog", "output": o.name},
	}
	if o.cfg.Mode == "data_stream" {
		body["data_stream"] = props{}
	}
	if c := stockComponents(s, o.index.Glob()); c != nil {
		// Elasticsearch 8's logs-*-* template (priority 100) would apply
		// to these names but for ours: keep what it brings (ECS and logs
		// mappings, the logs lifecycle, logs@custom) by composing the
		// same component templates; ours then adds its own block.
		body["composed_of"] = c
		if s.major > 8 || s.minor >= 7 {
			body["ignore_missing_component_templates"] = c
		}
	}
	b, _ := json.Marshal(body)
	return b
}

// stockComponents returns the component templates of Elasticsearch 8's
// built-in logs template when the pattern is a logs-* name on
// Elasticsearch >= 8, else nil. 8.0-8.6 named them logs-mappings,
// data-streams-mappings, logs-settings; 8.7+ logs@mappings,
// logs@settings, logs@custom (and ecs@mappings from 8.13), each listed in
// ignore_missing_component_templates (8.7+) so that a version without one
// of them still takes the template.
func stockComponents(s *serverInfo, glob string) []string {
	if s.distribution != Elasticsearch || s.major < 8 || !strings.HasPrefix(glob, "logs-") {
		return nil
	}
	if s.major == 8 && s.minor < 7 {
		return []string{"logs-mappings", "data-streams-mappings", "logs-settings"}
	}
	return []string{"logs@mappings", "logs@settings", "logs@custom", "ecs@mappings"}
}

// setupTemplates creates the output's index template when setup is on and
// it is absent. It returns an error only when the server could not be
// reached (the probe is then retried); every refusal is a warning.
func (o *Output) setupTemplates(ctx context.Context, s *serverInfo) error {
	if !o.cfg.setup() {
		return nil
	}
	name := o.templateName()
	warn := func(msg string, args ...any) {
		o.logger.Warn(o.kind+": setup: "+msg, append([]any{"template", name}, args...)...)
	}
	if strings.HasPrefix(o.index.Glob(), "*") {
		warn("skipped: the index starts with a field or a date, a template would match every index; create it yourself", "index", o.cfg.indexTemplate())
		return nil
	}
	if s.distribution != "" && !s.composableTemplates {
		warn("skipped: composable index templates need Elasticsearch 7.8 or newer", "server", s.String())
		return nil
	}
	st, body, err := o.adminRequest(ctx, http.MethodGet, "/_index_template/"+url.PathEscape(name), nil)
	if err != nil {
		return err
	}
	if st == http.StatusOK && !templateCovers(body, o.index.Glob()) {
		// A template of that name for other names: another agent's output
		// of the same name writing elsewhere. Leaving it would leave this
		// output's names without a template (a data stream would become a
		// plain index): this output's template gets a name of its own.
		other := name
		name = name + "-" + globHash(o.index.Glob())
		o.logger.Warn(o.kind+": setup: an index template named "+other+" exists for other index names: this output's template is named after its own", "template", name, "index_patterns", o.index.Glob())
		if st, body, err = o.adminRequest(ctx, http.MethodGet, "/_index_template/"+url.PathEscape(name), nil); err != nil {
			return err
		}
	}
	switch {
	case st == http.StatusOK:
		o.logger.Info(o.kind+": setup: the index template exists, left as it is", "template", name)
		return nil
	case st == http.StatusForbidden || st == http.StatusUnauthorized:
		warn("cannot read index templates (no privilege to manage them): going on; the template must exist already", "status", st, "answer", o.redact(reasonOf(body)))
		return nil
	case st != http.StatusNotFound:
		warn("cannot read the index template: going on without it", "status", st, "answer", o.redact(reasonOf(body)))
		return nil
	}
	lifecycle := false
	if o.cfg.Lifecycle != "" {
		switch {
		case s.distribution == OpenSearch:
			warn("lifecycle is not set: OpenSearch ISM policies attach to indices through their own ism_template", "lifecycle", o.cfg.Lifecycle)
		default:
			pst, pbody, err := o.adminRequest(ctx, http.MethodGet, "/_ilm/policy/"+url.PathEscape(o.cfg.Lifecycle), nil)
			if err != nil {
				return err
			}
			if pst == http.StatusOK {
				lifecycle = true
			} else {
				warn("lifecycle is not set: the server has no such ILM policy (or ILM)", "lifecycle", o.cfg.Lifecycle, "status", pst, "answer", o.redact(reasonOf(pbody)))
			}
		}
	}
	st, body, err = o.adminRequest(ctx, http.MethodPut, "/_index_template/"+url.PathEscape(name)+"?create=true", o.templateBody(s, lifecycle))
	if err != nil {
		return err
	}
	switch {
	case st == http.StatusOK:
		o.logger.Info(o.kind+": setup: index template created", "template", name, "index_patterns", o.index.Glob(), "priority", templatePriority, "data_stream", o.cfg.Mode == "data_stream")
	case st == http.StatusForbidden || st == http.StatusUnauthorized:
		warn("cannot create the index template (no privilege to manage them): going on; the template must exist already", "status", st, "answer", o.redact(reasonOf(body)))
	case strings.Contains(string(body), "already exists"):
		// Another agent created it meanwhile.
	default:
		warn("the server refused the index template: going on without it", "status", st, "answer", o.redact(reasonOf(body)))
	}
	return nil
}

// templateCovers reports whether a GET /_index_template/NAME answer holds
// glob among its index patterns (an unreadable answer counts as covering:
// the template is then left as it is, as before).
func templateCovers(body []byte, glob string) bool {
	var r struct {
		IndexTemplates []struct {
			IndexTemplate struct {
				IndexPatterns []string `json:"index_patterns"`
			} `json:"index_template"`
		} `json:"index_templates"`
	}
	if json.Unmarshal(body, &r) != nil || len(r.IndexTemplates) == 0 {
		return true
	}
	for _, t := range r.IndexTemplates {
		for _, p := range t.IndexTemplate.IndexPatterns {
			if p == glob {
				return true
			}
		}
	}
	return false
}

// globHash is a short hash of an index pattern, for template names.
func globHash(glob string) string {
	sum := sha256.Sum256([]byte(glob))
	return hex.EncodeToString(sum[:4])
}

// adminRequest sends a small JSON request and reads the answer. An error is
// returned only when there is no answer or a 5xx (blocked: retried with the
// probe).
func (o *Output) adminRequest(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	rctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	var hdr http.Header
	if body != nil {
		hdr = http.Header{"Content-Type": {"application/json"}}
	}
	resp, err := o.perform(rctx, method, path, hdr, body)
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil, ctx.Err()
		}
		return 0, nil, delivery.Blocked(transportReason(err), fmt.Errorf("%s: setup (%s %s): %s; retrying", o.kind, method, path, o.redact(err.Error())))
	}
	defer resp.Body.Close()
	b, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if rerr == nil && resp.StatusCode >= 500 {
		rerr = fmt.Errorf("HTTP %d%s", resp.StatusCode, reasonOf(b))
	}
	if rerr != nil {
		if ctx.Err() != nil {
			return 0, nil, ctx.Err()
		}
		return 0, nil, delivery.Blocked("server_unreachable", fmt.Errorf("%s: setup (%s %s): %s; retrying", o.kind, method, path, o.redact(rerr.Error())))
	}
	return resp.StatusCode, b, nil
}
