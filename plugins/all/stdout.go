package all

import _ "github.com/sidelog/sidelog/output/stdout" // stdout output
