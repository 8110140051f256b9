package all

import _ "github.com/sidelog/sidelog/input/tail" // the tail input
