package all

import (
	_ "github.com/sidelog/sidelog/input/kafka"  // the kafka input
	_ "github.com/sidelog/sidelog/output/kafka" // the kafka output
)
