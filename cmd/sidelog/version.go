package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Stamped by the build (scripts/build.sh, the Dockerfile):
//
//	-ldflags "-X main.version=v0.2.0 -X main.commit=<sha> -X main.date=<RFC 3339 UTC>"
//
// Unstamped builds (go run, go build) fall back to what the Go toolchain
// recorded in the binary (see buildInfo).
var (
	version = "dev"
	commit  = ""
	date    = ""
)

// buildInfo returns the version, commit and build date: the stamped values,
// else the module version of `go install module@version` and the VCS
// revision and commit time that `go build` records from a git checkout
// (-buildvcs, "+dirty" when the tree had changes), else "unknown".
func buildInfo() (ver, rev, when string) {
	ver, rev, when = version, commit, date
	if bi, ok := debug.ReadBuildInfo(); ok {
		if ver == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			ver = bi.Main.Version
		}
		var modified bool
		var vcsRev, vcsTime string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				vcsRev = s.Value
			case "vcs.time":
				vcsTime = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if rev == "" && vcsRev != "" {
			rev = vcsRev
			if modified {
				rev += "+dirty"
			}
		}
		if when == "" && vcsTime != "" {
			when = vcsTime + " (commit time)"
		}
	}
	if rev == "" {
		rev = "unknown"
	}
	if when == "" {
		when = "unknown"
	}
	return ver, rev, when
}

// versionLine is what `sidelog version` prints.
func versionLine() string {
	ver, rev, when := buildInfo()
	return fmt.Sprintf("sidelog %s (commit %s, built %s, %s %s/%s)", ver, rev, when, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// agentVersion is the version alone (outputs that name the agent: ECS
// agent.version).
func agentVersion() string {
	ver, _, _ := buildInfo()
	return ver
}
