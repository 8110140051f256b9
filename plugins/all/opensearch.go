package all

import _ "github.com/sidelog/sidelog/output/opensearch" // the opensearch output (the elasticsearch code)
