package pipeline

import "time"

// Defaults shared by the agent and `warden analyze`. The one that differs
// is said here, with why.
const (
	// LogFormat is how lines are parsed unless told: each line in the
	// first format that reads it (accesslog's auto).
	LogFormat = "auto"
	// Retention is the event time an agent keeps back from the newest
	// request: a long-running process over a live stream keeps a day.
	// `warden analyze` keeps everything (AnalyzeRetention): its files are
	// history an operator asked about, and a day's window back from the
	// newest line would silently drop the older days of a rotated log.
	Retention        = 24 * time.Hour
	AnalyzeRetention = time.Duration(0)
	// MaxLateness is 0: no event is late, every one reaches detection.
	MaxLateness = time.Duration(0)
)

// One more difference, in the detector rather than a setting: `warden
// analyze` turns off the detector's collection of idle buckets
// (detect.Detector.Offline). Collection is driven by the watermark, and
// files given in any order (an old rotated log after a newer one) are one
// source whose event time jumps back; an agent's partitions move forward.
// Collection only drops buckets that can no longer change an outcome, so
// the alerts are the same; memory then grows with the sources in the files.
