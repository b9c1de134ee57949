package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
)

// Sentinel errors: why a batch was rejected. A worker that gets one of them
// re-reads its position from the FSM before doing anything else.
var (
	// ErrFenced: the batch carries an epoch the partition has moved past.
	ErrFenced = errors.New("fsm: fenced by a newer epoch")
	// ErrNotOwner: the proposer does not own the partition.
	ErrNotOwner = errors.New("fsm: proposer does not own the partition")
	// ErrOffsetMismatch: the batch does not start at the committed offset
	// (a duplicate, or a worker that skipped ahead).
	ErrOffsetMismatch = errors.New("fsm: batch does not start at the committed offset")
	// ErrUnknownPartition: no such partition in the assignment.
	ErrUnknownPartition = errors.New("fsm: unknown partition")
	// ErrStaleConfig: a configure command whose version is not above the
	// cluster's configuration version.
	ErrStaleConfig = errors.New("fsm: configuration not newer than the cluster's")
	// ErrBadRange: until is below from.
	ErrBadRange = errors.New("fsm: batch range ends before it starts")
	// ErrBadBatch: the batch's analytics or detector delta do not decode
	// whole, or the batch did not come from a log entry (Decode).
	ErrBadBatch = errors.New("fsm: malformed batch")
)

// errNotDecoded: a batch built in memory and handed to Apply. Apply reads
// a batch only as Decode leaves it, from its bytes, as every replica does.
var errNotDecoded = fmt.Errorf("%w: built in memory, not decoded from a log entry", ErrBadBatch)

// reasons maps each sentinel to the short label used in results and metrics.
var reasons = map[error]string{
	ErrFenced:           "fenced",
	ErrNotOwner:         "not_owner",
	ErrOffsetMismatch:   "offset_mismatch",
	ErrUnknownPartition: "unknown_partition",
	ErrBadRange:         "bad_range",
	ErrBadBatch:         "bad_batch",
}

// Rejections lists the sentinels a batch can be rejected with, in a fixed
// order.
func Rejections() []error {
	return []error{ErrFenced, ErrNotOwner, ErrOffsetMismatch, ErrUnknownPartition, ErrBadRange, ErrBadBatch}
}

// Reason returns the metric label of a rejection error ("" for nil).
func Reason(err error) string {
	if err == nil {
		return ""
	}
	for e, r := range reasons {
		if errors.Is(err, e) {
			return r
		}
	}
	return "other"
}

// ReasonError is the inverse of Reason.
func ReasonError(reason string) error {
	if reason == "" {
		return nil
	}
	for e, r := range reasons {
		if r == reason {
			return e
		}
	}
	return fmt.Errorf("fsm: %s", reason)
}

// Kind names a command.
type Kind string

// Command kinds.
const (
	KindSetMembers Kind = "set_members"
	KindAssign     Kind = "assign"
	KindCommit     Kind = "commit"
	KindReset      Kind = "reset_offset"
	KindConfigure  Kind = "configure"
	// Operators' decisions, and the alert outbox.
	KindDecisionAdd    Kind = "decision_add"
	KindDecisionDelete Kind = "decision_delete"
	KindMarkPublished  Kind = "mark_published"
	// KindBouncerPull (bouncers.go) records a bouncer stream answer.
)

// Command is one entry of the replicated log. Exactly one body is set,
// the one named by Kind.
type Command struct {
	Kind    Kind        `json:"kind"`
	Members []Member    `json:"members,omitempty"`
	Assign  *Assign     `json:"assign,omitempty"`
	Commit  []Batch     `json:"commit,omitempty"`
	Reset   *ResetBatch `json:"reset,omitempty"`
	// OffsetCommit moves a committed offset alone (KindOffsetCommit); with
	// KindResults, Restart says the batch is a worker's first, from the
	// committed offset.
	OffsetCommit *OffsetCommit `json:"offset_commit,omitempty"`
	Restart      bool          `json:"restart,omitempty"`
	// Lost is a range deleted by retention before it was read (KindLost).
	Lost *LostRange `json:"lost,omitempty"`
	// ResetOffsets is an operator's replay or skip (KindResetOffsets).
	ResetOffsets *ResetOffsets `json:"reset_offsets,omitempty"`
	Config       *Config       `json:"config,omitempty"`
	// Decision is a manual decision; Now (Unix ns) is the proposer's clock,
	// so every replica computes the same end time.
	Decision *ManualDecision `json:"decision,omitempty"`
	// ID is the decision to delete; Seq the last alert published.
	ID  int64  `json:"id,omitempty"`
	Seq uint64 `json:"seq,omitempty"`
	// Bouncer is an answer written to a bouncer instance.
	Bouncer *BouncerPull `json:"bouncer,omitempty"`
}

// ManualDecision is an operator's decision.
type ManualDecision struct {
	Value    string `json:"value"`
	Type     string `json:"type"`
	Reason   string `json:"reason"`
	Duration string `json:"duration"`
	Now      int64  `json:"now"`
}

// Assign grows the partition table to Partitions (it never shrinks) and
// gives each moved partition its new owner and a new epoch.
type Assign struct {
	Partitions int32  `json:"partitions"`
	Moves      []Move `json:"moves"`
	// Start is where partitions new to the table begin (their log start,
	// or their end for --start-offset latest); absent ones begin at 0.
	Start map[int32]int64 `json:"start,omitempty"`
}

// Move gives Partition to Owner ("" leaves it unowned).
type Move struct {
	Partition int32  `json:"partition"`
	Owner     string `json:"owner"`
}

// Batch is one worker's claim: "as owner at Epoch, I processed the records
// of Partition in [From, Until), and they amount to Digest".
//
// A worker fills Analytics and Detect and encodes the batch (EncodeBatch);
// Apply reads a batch only as Decode leaves it: those two nil, their bytes
// checked and kept for the merge. The JSON names are those of older
// releases' logs, which Decode still reads.
type Batch struct {
	Node      string `json:"node"`
	Partition int32  `json:"partition"`
	Epoch     uint64 `json:"epoch"`
	From      int64  `json:"from"`
	Until     int64  `json:"until"`
	Digest    Digest `json:"delta"`
	// Analytics is the load figures of the batch's records.
	Analytics *analytics.Aggregate `json:"analytics,omitempty"`
	// Malformed is the batch's records that did not parse.
	Malformed []BadRecord `json:"malformed,omitempty"`
	// Detect is the change to the partition's detector state, and the
	// alerts the batch raised.
	Detect *detect.Delta `json:"detect,omitempty"`
	// Stage says which topic the batch is of: the input (StageInput) or
	// the repartition topic (StageByClient, fsm/repart.go). Gen is the
	// replay generation it was processed under (StageByClient).
	Stage uint8  `json:"stage,omitempty"`
	Gen   uint64 `json:"gen,omitempty"`
	// Watermark is the partition's watermark after the batch; Late its
	// events left out of detection as late (StageInput).
	Watermark int64 `json:"watermark,omitempty"`
	Late      int64 `json:"late,omitempty"`
	// Marks and Merge: the sources' marks the batch changed, and what its
	// merge did (StageByClient).
	Marks []MarkUpdate `json:"marks,omitempty"`
	Merge MergeCounts  `json:"merge,omitempty"`
	MaxTS int64        `json:"max_ts,omitempty"`
	// Follows, when Sequenced, is how many second-stage commits of the
	// partition the batch was cut after (ByClient.Commits then); the FSM
	// applies it only after exactly that many (StageByClient). A batch
	// that released lines held in its merge reads no record of its own
	// and moves no offset, so From alone cannot tell it from its own
	// repeat, nor from a batch cut on a state that had not yet applied it.
	Follows   uint64 `json:"follows,omitempty"`
	Sequenced bool   `json:"sequenced,omitempty"`
	// Run names the worker run that cut a sequenced batch (random, not
	// 0), RunStart says it is the run's first. Follows alone is a count:
	// a run stopped with batches in flight, and its successor that read
	// a state before they applied, number their batches alike, and the
	// successor's later batches, cut on a merge that released lines into
	// its refused ones, would pass. So only a run's first batch may
	// follow another run's commits (ByClient.Run).
	Run      uint64 `json:"run,omitempty"`
	RunStart bool   `json:"run_start,omitempty"`
	// Checkpoint says Detect holds every bucket the detector changed
	// since the partition's previous checkpoint, and its watermark: the
	// FSM's detector state then stands after this batch (checkpoint.go).
	// Otherwise Detect holds only alerts.
	Checkpoint bool `json:"checkpoint,omitempty"`

	// Set by decoding: Analytics and Detect in binary form, checked; why
	// the batch's bytes were refused (ErrBadBatch), if they were.
	analytics analytics.CheckedAggregate
	detect    detect.CheckedDelta
	bad       error
	decoded   bool
}

// checked is why Apply cannot take the batch: not decoded, or bytes that
// do not decode whole.
func (b *Batch) checked() error {
	if !b.decoded {
		return errNotDecoded
	}
	return b.bad
}

// ResetBatch moves a partition's committed offset (replay or skip) and bumps
// its epoch so that the running worker is fenced and restarts from there.
// Results already applied are kept: a replay counts the records again, which
// is what an operator asking for a replay wants.
type ResetBatch struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

// Result is what applying a command produced. For a commit, Rejected holds
// one reason per batch, in order ("" for an applied batch).
type Result struct {
	Rejected   []string `json:"rejected,omitempty"`
	Err        string   `json:"error,omitempty"`
	DecisionID int64    `json:"decision_id,omitempty"`
}

// BatchErr returns the rejection of batch i as a sentinel error, or nil.
func (r Result) BatchErr(i int) error {
	if i >= len(r.Rejected) {
		return nil
	}
	return ReasonError(r.Rejected[i])
}

// Encode serialises a command for the Raft log: commits and results in
// binary (see binary.go), the rest as JSON.
func Encode(c Command) ([]byte, error) {
	if c.Kind == KindCommit || c.Kind == KindResults {
		return encodeBatches(c), nil
	}
	return json.Marshal(c)
}

// Decode parses a command from the Raft log. Its batches are checked and
// ready for Apply; a commit or results command in an older release's JSON
// decodes as its binary form does.
func Decode(b []byte) (Command, error) {
	if len(b) > 0 && (b[0] == binaryCommit || b[0] == binaryResults || b[0] == binaryCommit2 || b[0] == binaryCommit3 || b[0] == binaryResults3) {
		return decodeBatches(b)
	}
	var c Command
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("fsm: decode command: %w", err)
	}
	if c.Kind == KindCommit || c.Kind == KindResults {
		return decodeLegacy(c)
	}
	return c, nil
}

// Apply applies cmd to s. It is deterministic: the same state and command
// always give the same new state and result. It never fails as a whole; a
// command that makes no sense leaves s unchanged and says why in Result.Err.
// The batches of a commit or results command must come from Decode: any
// other is refused (ErrBadBatch).
func Apply(s *State, cmd Command) Result {
	switch cmd.Kind {
	case KindSetMembers:
		s.Members = make(map[string]Member, len(cmd.Members))
		for _, m := range cmd.Members {
			s.Members[m.ID] = m
		}
		return Result{}
	case KindAssign:
		if cmd.Assign == nil {
			return Result{Err: "assign without body"}
		}
		return applyAssign(s, *cmd.Assign)
	case KindCommit:
		res := Result{Rejected: make([]string, len(cmd.Commit))}
		for i, b := range cmd.Commit {
			res.Rejected[i] = Reason(applyBatch(s, b))
		}
		return res
	case KindOffsetCommit:
		if cmd.OffsetCommit == nil {
			return Result{Err: "offset_commit without body"}
		}
		return applyOffsetCommit(s, *cmd.OffsetCommit)
	case KindResults:
		res := Result{Rejected: make([]string, len(cmd.Commit))}
		for i, b := range cmd.Commit {
			res.Rejected[i] = Reason(applyResults(s, b, cmd.Restart && i == 0))
		}
		return res
	case KindLost:
		if cmd.Lost == nil {
			return Result{Err: "lost without body"}
		}
		return applyLost(s, *cmd.Lost)
	case KindResetOffsets:
		if cmd.ResetOffsets == nil {
			return Result{Err: "reset_offsets without body"}
		}
		return applyResetOffsets(s, *cmd.ResetOffsets)
	case KindReset:
		if cmd.Reset == nil {
			return Result{Err: "reset without body"}
		}
		p := cmd.Reset.Partition
		if p < 0 || int(p) >= len(s.Partitions) || cmd.Reset.Offset < 0 {
			return Result{Err: ErrUnknownPartition.Error()}
		}
		s.Partitions[p].Committed, s.Partitions[p].Processed = cmd.Reset.Offset, cmd.Reset.Offset
		s.Partitions[p].Epoch++
		unsetInputCheckpoint(&s.Partitions[p])
		return Result{}
	case KindConfigure:
		if cmd.Config == nil {
			return Result{Err: "configure without body"}
		}
		if s.Config != nil && cmd.Config.Version <= s.Config.Version {
			return Result{Err: fmt.Sprintf("%v: version %d is not above the cluster's %d", ErrStaleConfig, cmd.Config.Version, s.Config.Version)}
		}
		ret, err := time.ParseDuration(cmd.Config.Retention)
		if err != nil {
			return Result{Err: fmt.Sprintf("configure: retention: %v", err)}
		}
		if err := (analytics.Config{Retention: ret}).Validate(); err != nil {
			return Result{Err: fmt.Sprintf("configure: %v", err)}
		}
		if ml := cmd.Config.MaxLateness; ml != "" {
			if d, err := time.ParseDuration(ml); err != nil || d < 0 {
				return Result{Err: fmt.Sprintf("configure: max lateness %q: want a duration of 0 or more", ml)}
			}
		}
		if so := cmd.Config.StartOffset; so != "" && so != "earliest" && so != "latest" {
			return Result{Err: fmt.Sprintf("configure: start offset %q: want earliest or latest", so)}
		}
		rules, err := compileRules(cmd.Config.Rules)
		if err != nil {
			return Result{Err: fmt.Sprintf("configure: rules: %v", err)}
		}
		bc := s.Book.Config
		bc.Allow, bc.MaxUnpublished, bc.Simulate = cmd.Config.Allow, cmd.Config.MaxUnpublishedAlerts, cmd.Config.Simulate
		if err := s.Book.SetConfig(bc); err != nil {
			return Result{Err: fmt.Sprintf("configure: %v", err)}
		}
		c := *cmd.Config
		c.Version = max(c.Version, 1)
		s.Config, s.rules = &c, rules
		s.Analytics.SetRetention(ret)
		return Result{}
	case KindDecisionAdd:
		m := cmd.Decision
		if m == nil {
			return Result{Err: "decision without body"}
		}
		dur, err := time.ParseDuration(m.Duration)
		if err != nil {
			return Result{Err: fmt.Sprintf("duration %q: %v", m.Duration, err)}
		}
		d, err := s.Book.AddManual(m.Value, m.Type, m.Reason, m.Now, dur)
		if err != nil {
			return Result{Err: err.Error()}
		}
		return Result{DecisionID: d.ID}
	case KindDecisionDelete:
		if !s.Book.Delete(cmd.ID) {
			return Result{Err: fmt.Sprintf("no decision %d", cmd.ID)}
		}
		return Result{}
	case KindMarkPublished:
		s.Book.MarkPublished(cmd.Seq)
		return Result{}
	case KindBouncerPull:
		return applyBouncerPull(s, cmd.Bouncer)
	default:
		return Result{Err: fmt.Sprintf("unknown command kind %q", cmd.Kind)}
	}
}

// MaxPartitions bounds the partition table. Real topics have thousands of
// partitions at most; an assign past this could only come from a forged or
// corrupt command, and would make every replica allocate it, entry after
// entry, at each restart.
const MaxPartitions = 1 << 16

func applyAssign(s *State, a Assign) Result {
	if a.Partitions > MaxPartitions {
		return Result{Err: fmt.Sprintf("assign of %d partitions: at most %d", a.Partitions, MaxPartitions)}
	}
	for n := int32(len(s.Partitions)); n < a.Partitions; n++ {
		start := max(0, a.Start[n])
		s.Partitions = append(s.Partitions, Partition{Partition: n, Committed: start, Processed: start, StartOffset: start})
	}
	for _, m := range a.Moves {
		if m.Partition < 0 || int(m.Partition) >= len(s.Partitions) {
			return Result{Err: fmt.Sprintf("move of unknown partition %d", m.Partition)}
		}
	}
	for _, m := range a.Moves {
		p := &s.Partitions[m.Partition]
		if p.Owner == m.Owner {
			continue
		}
		p.Owner = m.Owner
		p.Epoch++
	}
	return Result{}
}

// fence finds batch b's partition and checks that b may apply there: its
// proposer owns the partition at b's epoch, and b starts where its stage's
// committed offset stands (the input's, or the repartition topic's).
func fence(s *State, b *Batch) (*Partition, error) {
	if b.Partition < 0 || int(b.Partition) >= len(s.Partitions) {
		return nil, ErrUnknownPartition
	}
	p := &s.Partitions[b.Partition]
	committed, run := p.Committed, p.Run
	if b.Stage == StageByClient {
		committed, run = p.ByClient.Committed, p.ByClient.Run
	}
	switch {
	case p.Owner != b.Node:
		return nil, ErrNotOwner
	case p.Epoch != b.Epoch:
		return nil, ErrFenced
	case committed != b.From:
		return nil, ErrOffsetMismatch
	case b.Run != 0 && b.Run != run && !b.RunStart:
		// A later batch of a run whose first was refused, or of a run
		// another has taken over from: it may rest on its own refused
		// batches (a second stage's merge released lines into them; a
		// checkpoint holds what changed since the run's own last one).
		// Batch.Run.
		return nil, ErrOffsetMismatch
	case b.Until < b.From:
		return nil, ErrBadRange
	}
	return p, nil
}

func applyBatch(s *State, b Batch) error {
	if err := b.checked(); err != nil {
		return err
	}
	p, err := fence(s, &b)
	if err != nil {
		return err
	}
	if b.Stage == StageByClient {
		return applyByClient(s, p, b)
	}
	p.Run = b.Run
	switch faultAt(p) {
	case "skip-commit": // lose the batch: offsets move, results do not
		p.record(b.Node, b.From, b.Until)
		p.Committed = b.Until
		p.Commits++
		return nil
	case "double-apply": // count the batch twice
		p.Digest.Add(b.Digest)
	case "offset-back": // apply, then move the offset back to the batch start
		defer func() { p.Committed = b.From }()
	}
	p.record(b.Node, b.From, b.Until)
	p.Committed, p.Processed = b.Until, b.Until
	p.Commits++
	p.Digest.Add(b.Digest)
	p.Watermark = max(p.Watermark, b.Watermark)
	p.Late += b.Late
	// Both checked whole at decoding: neither can fail midway.
	s.Analytics.MergeChecked(b.analytics)
	applyDetect(s, b)
	if b.Checkpoint && len(b.detect.Bytes()) > 0 {
		checkpointInput(p, &b)
	}
	if len(b.Malformed) > 0 {
		s.Malformed = append(s.Malformed, b.Malformed...)
		if over := len(s.Malformed) - MaxMalformedSample; over > 0 {
			s.Malformed = append(s.Malformed[:0:0], s.Malformed[over:]...)
		}
	}
	return nil
}

// applyDetect applies a batch's detector delta (checked at decoding) to its
// partition's detector state, and its alerts to the book.
func applyDetect(s *State, b Batch) {
	if len(b.detect.Bytes()) > 0 {
		ps := s.Detect[b.Partition]
		if ps == nil {
			ps = detect.NewStored(nil)
			s.Detect[b.Partition] = ps
		}
		alerts := ps.ApplyChecked(b.detect)
		rules := s.Rules()
		dropped := s.Book.UnpublishedDropped
		for _, a := range alerts {
			s.Book.AddAlert(a, rules.Scenario(a.Scenario))
		}
		if d := s.Book.UnpublishedDropped - dropped; d > 0 {
			s.raiseOperatorAlert(OperatorAlert{At: alerts[len(alerts)-1].Time, Kind: "alerts-dropped-unpublished", Partition: b.Partition,
				Count: int64(d), Message: fmt.Sprintf("%d alerts dropped before reaching the alerts topic: more than the configured maximum waited", d)})
		}
	}
}

// Replay applies cmds in order to a new state for topic and returns it. The
// commands are as Decode returns them.
func Replay(topic string, cmds []Command) *State {
	s := NewState(topic)
	for _, c := range cmds {
		Apply(s, c)
	}
	return s
}
