package pipeline

import (
	"time"

	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/fsm"
)

// How often a detecting stage checkpoints its detector into the FSM
// (fsm/checkpoint.go): after CheckpointInterval, or CheckpointRecords
// records, or once the buckets changed since the last checkpoint are
// estimated at CheckpointBytes (detect.Detector.Pending), whichever comes
// first. Between checkpoints a batch carries only its alerts, so every
// replica applies a bucket once per checkpoint, however many batches
// touched it. The price is paid at a change of owner: the new owner runs
// the records since the last checkpoint through detection again before it
// commits, at most CheckpointRecords of them per partition.
const (
	CheckpointInterval = 2 * time.Second
	CheckpointRecords  = 200_000
	CheckpointBytes    = 1 << 20
)

// Checkpoints is a detecting stage's schedule of checkpoints.
type Checkpoints struct {
	// Interval and Records are the bounds (0 Interval: every batch is a
	// checkpoint, as before checkpoints existed).
	Interval time.Duration
	Records  int
	last     time.Time
	records  int
	// force makes the next batch a checkpoint: the FSM's state does not
	// stand at a checkpoint this stage can resume from.
	force bool
}

// NewCheckpoints starts a schedule at now; force says the first batch must
// be a checkpoint.
func NewCheckpoints(interval time.Duration, records int, now time.Time, force bool) *Checkpoints {
	return &Checkpoints{Interval: interval, Records: records, last: now, force: force}
}

// Add counts records taken into detection since the last checkpoint
// (replayed ones included).
func (c *Checkpoints) Add(records int) { c.records += records }

// Force makes the next batch a checkpoint: one was due and did not go.
func (c *Checkpoints) Force() { c.force = true }

// Due says whether the batch being cut at now must be a checkpoint.
func (c *Checkpoints) Due(now time.Time, d *detect.Detector) bool {
	return c.force || c.Interval <= 0 || now.Sub(c.last) >= c.Interval ||
		c.Records > 0 && c.records >= c.Records || d.Pending() >= CheckpointBytes
}

// Close gives batch b the detector's delta: every bucket changed since the
// last checkpoint when one is due (and restarts the schedule), otherwise
// only the alerts.
func (c *Checkpoints) Close(b *fsm.Batch, d *detect.Detector, now time.Time) {
	if c.Due(now, d) {
		b.Detect, b.Checkpoint = d.Flush(), true
		c.last, c.records, c.force = now, 0, false
		return
	}
	b.Detect, b.Checkpoint = d.Alerts(), false
}
