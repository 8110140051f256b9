package all

import _ "github.com/sidelog/sidelog/output/datadog" // the datadog output
