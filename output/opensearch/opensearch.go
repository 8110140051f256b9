// Package opensearch is the `opensearch` output: the elasticsearch output's
// code and keys (output/elasticsearch), for OpenSearch 1.x-3.x. Its
// start-up probe expects an OpenSearch node (a warning names another
// server); what a request may hold is decided by the server the probe
// finds, as for type elasticsearch.
package opensearch

import (
	"github.com/sidelog/sidelog/output"
	"github.com/sidelog/sidelog/output/elasticsearch"
	"github.com/sidelog/sidelog/plugins"
)

func init() {
	plugins.RegisterOutput("opensearch", plugins.Output{
		Config: func() any { return elasticsearch.NewConfig() },
		New: func(cfg any, env plugins.OutputEnv) (output.Output, error) {
			return elasticsearch.NewFor(cfg.(*elasticsearch.Config), env, elasticsearch.OpenSearch)
		},
	})
}
