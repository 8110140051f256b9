package all

import (
	_ "github.com/sidelog/sidelog/parser/cri"    // parser: cri
	_ "github.com/sidelog/sidelog/parser/docker" // parser: docker
	_ "github.com/sidelog/sidelog/parser/json"   // parser: json
	_ "github.com/sidelog/sidelog/parser/logfmt" // parser: logfmt
	_ "github.com/sidelog/sidelog/parser/none"   // parser: none
	_ "github.com/sidelog/sidelog/parser/regex"  // parser: regex
)
