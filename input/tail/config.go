package tail

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/sidelog/sidelog/config/units"
	"github.com/sidelog/sidelog/plugins"
)

// Config is the tail input's part of an input's YAML mapping. The keys name,
// type and the parser keys are decoded by the config loader elsewhere.
type Config struct {
	// Paths are globs; "**" matches any number of directories.
	Paths []string `yaml:"paths"`
	// Exclude are globs matched against the full path when they contain a
	// "/", else against the file's base name.
	Exclude []string `yaml:"exclude"`
	// ReadFrom is head or tail; it applies only to files present when the
	// input starts for the first time (no checkpoint yet).
	ReadFrom string `yaml:"read_from"`
	// PollInterval is how often the globs are rescanned and open files are
	// checked, beside fsnotify. While fsnotify watches every directory
	// involved and has missed nothing, the rescans back off from
	// PollInterval to MaxPollInterval.
	PollInterval time.Duration `yaml:"poll_interval"`
	// MaxLine is max_line_bytes: a longer line is cut and flagged.
	MaxLine units.Size `yaml:"max_line_bytes"`
	// MaxDeletedHold is how long a deleted file that is not read to its end
	// (because the pipeline blocks) is kept open before it is released and
	// its unread bytes are counted as lost.
	MaxDeletedHold time.Duration `yaml:"max_deleted_hold"`
	// MaxReadErrorHold is how long reads of a file that fail (EIO, ESTALE:
	// not the end of the file) are retried, at each scan, before the bytes
	// from the read position to the file's size are given up and counted
	// as lost; reading then goes on after them.
	MaxReadErrorHold time.Duration `yaml:"max_read_error_hold"`
	// MaxOpenFiles caps the log files held open (0: no cap). To open one
	// more, the idle open file that was active the longest ago is closed
	// (read to its end, nothing held); when none is idle the open waits for
	// a later scan. A closed file is reopened by identity at its position
	// when a scan finds it changed.
	MaxOpenFiles int `yaml:"max_open_files"`
	// CloseInactive closes an open file idle for this long (read to its
	// end, nothing held, not written); 0: never. Reopened like above.
	CloseInactive time.Duration `yaml:"close_inactive"`
	// IgnoreOlder skips a file no checkpoint knows whose modification time
	// is older than this (0: none): it is recorded as read to its end, and
	// only what is appended later is read. For the first start on a node
	// full of old logs.
	IgnoreOlder time.Duration `yaml:"ignore_older"`
	// ExitOnEOF: read every matched file to its end, wait for every
	// acknowledgement, then stop.
	ExitOnEOF bool `yaml:"exit_on_eof"`

	// Tuning keys (documented in docs/input-tail.md).

	// ReadBufferBytes is the size of one read (one batch of events).
	ReadBufferBytes units.Size `yaml:"read_buffer_bytes"`
	// FingerprintBytes is how many first bytes of a file identify it
	// beside its device and inode.
	FingerprintBytes int `yaml:"fingerprint_bytes"`
	// RotateWait is how long a file renamed away from every matched path
	// stays open after it is read to its end (a writer may still append to
	// it before it reopens its log). A deleted file is closed at once.
	RotateWait time.Duration `yaml:"rotate_wait"`
	// CheckpointInterval is the shortest pause between two checkpoint
	// writes. Acknowledged offsets are persisted as soon as they move (a
	// group commit: the acknowledgements that arrive during one write go
	// into the next), at most once per CheckpointInterval.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// RotatedDirs are the directories where rotated files are looked for
	// at start-up, beside the file's own directory (logrotate's olddir); a
	// relative one is relative to the file's directory.
	RotatedDirs []string `yaml:"rotated_dirs"`
	// ForgetAfter is how long the checkpoint keeps a file that no path
	// matches any more.
	ForgetAfter time.Duration `yaml:"forget_after"`
	// Watch enables fsnotify beside polling.
	Watch bool `yaml:"watch"`
	// MaxPollInterval is the longest pause between two rescans while
	// fsnotify is healthy (every directory watched, no event missed, no
	// error) and nothing changes: the safety poll. Rescans go back to
	// PollInterval at once on any change, on an fsnotify error, and for
	// missHold after a rescan found a change that fsnotify did not report.
	// A value at or below PollInterval turns the back-off off.
	MaxPollInterval time.Duration `yaml:"max_poll_interval"`
	// DrainTimeout bounds how long a graceful stop waits for the
	// acknowledgements of the events it emitted before it persists the
	// checkpoint and returns, when the input runs without a pipeline that
	// gives it a shutdown deadline (input.Env.ShutdownDeadline): under the
	// agent the wait ends when every acknowledgement came back or at the
	// pipeline's shutdown_timeout.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
}

// DefaultConfig returns a config holding the defaults.
func DefaultConfig() *Config {
	return &Config{
		ReadFrom:           "head",
		PollInterval:       250 * time.Millisecond,
		MaxLine:            1 << 20,
		MaxDeletedHold:     10 * time.Minute,
		MaxReadErrorHold:   time.Minute,
		ReadBufferBytes:    256 << 10,
		FingerprintBytes:   1024,
		RotateWait:         5 * time.Second,
		CheckpointInterval: 10 * time.Millisecond,
		ForgetAfter:        time.Hour,
		Watch:              true,
		MaxPollInterval:    5 * time.Second,
		DrainTimeout:       5 * time.Second,
	}
}

// MaxLineBytes is the longest line the input emits uncut; the pipeline
// passes it to the parser builder.
func (c *Config) MaxLineBytes() int { return int(c.MaxLine) }

// Validate checks what the types alone cannot.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &plugins.KeyError{Key: key, Err: fmt.Errorf(format, args...)})
	}
	if len(c.Paths) == 0 {
		bad("paths", "at least one path is required")
	}
	for i, p := range c.Paths {
		if err := checkPattern(p); err != nil {
			bad(fmt.Sprintf("paths[%d]", i), "%v", err)
		} else if !filepath.IsAbs(p) {
			bad(fmt.Sprintf("paths[%d]", i), "%q is not an absolute path", p)
		}
	}
	for i, p := range c.Exclude {
		if err := checkPattern(p); err != nil {
			bad(fmt.Sprintf("exclude[%d]", i), "%v", err)
		}
	}
	if c.ReadFrom != "head" && c.ReadFrom != "tail" {
		bad("read_from", "must be head or tail, not %q", c.ReadFrom)
	}
	if c.PollInterval < time.Millisecond {
		bad("poll_interval", "must be at least 1ms, not %v", c.PollInterval)
	}
	if c.MaxPollInterval < 0 {
		bad("max_poll_interval", "must not be negative")
	}
	if c.MaxLine < 16 || c.MaxLine > 1<<30 {
		bad("max_line_bytes", "must be between 16 and 1GiB, not %v", c.MaxLine)
	}
	if c.MaxDeletedHold < 0 {
		bad("max_deleted_hold", "must not be negative")
	}
	if c.MaxOpenFiles < 0 {
		bad("max_open_files", "must not be negative")
	}
	if c.CloseInactive < 0 {
		bad("close_inactive", "must not be negative")
	}
	if c.IgnoreOlder < 0 {
		bad("ignore_older", "must not be negative")
	}
	if c.MaxReadErrorHold < 0 {
		bad("max_read_error_hold", "must not be negative")
	}
	if c.ReadBufferBytes < 4<<10 || c.ReadBufferBytes > 64<<20 {
		bad("read_buffer_bytes", "must be between 4KiB and 64MiB, not %v", c.ReadBufferBytes)
	}
	if c.FingerprintBytes < 16 || c.FingerprintBytes > 64<<10 {
		bad("fingerprint_bytes", "must be between 16 and 65536, not %d", c.FingerprintBytes)
	}
	if c.RotateWait < 0 {
		bad("rotate_wait", "must not be negative")
	}
	if c.CheckpointInterval < time.Millisecond {
		bad("checkpoint_interval", "must be at least 1ms, not %v", c.CheckpointInterval)
	}
	if c.ForgetAfter < time.Second {
		bad("forget_after", "must be at least 1s, not %v", c.ForgetAfter)
	}
	if c.DrainTimeout < 0 {
		bad("drain_timeout", "must not be negative")
	}
	return errors.Join(errs...)
}
