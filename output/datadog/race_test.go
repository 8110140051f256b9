//go:build race

package datadog

// The race detector slows the 100,000-record delivery test ~10x; under
// -race it runs the same assertions on fewer records.
const raceEnabled = true
