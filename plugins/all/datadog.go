//go:build !nodatadog

package all

import _ "github.com/sidelog/sidelog/output/datadog"
