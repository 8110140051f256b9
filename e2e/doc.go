// Package e2e holds acceptance tests that build the sidelog binary and
// drive it as a process: metrics against the records sent, /status and
// /readyz with a failing output, graceful shutdown.
package e2e
