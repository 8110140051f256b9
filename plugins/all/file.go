package all

import _ "github.com/sidelog/sidelog/output/file" // file output
