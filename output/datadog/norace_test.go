//go:build !race

package datadog

const raceEnabled = false
