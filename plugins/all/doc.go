// Package all imports every built-in plugin, one file per plugin, so that a
// blank import of this package registers them all.
package all
