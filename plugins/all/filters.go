package all

import (
	_ "github.com/sidelog/sidelog/filter/drop"
	_ "github.com/sidelog/sidelog/filter/keep"
	_ "github.com/sidelog/sidelog/filter/kubernetes"
	_ "github.com/sidelog/sidelog/filter/modify"
	_ "github.com/sidelog/sidelog/filter/redact"
	_ "github.com/sidelog/sidelog/filter/sample"
	_ "github.com/sidelog/sidelog/filter/throttle"
)
