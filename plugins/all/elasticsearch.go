package all

import _ "github.com/sidelog/sidelog/output/elasticsearch" // the elasticsearch output
