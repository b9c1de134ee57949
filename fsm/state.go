// Package fsm is Warden's replicated state machine.
//
// Every node holds the same State: the cluster's members, who owns each
// partition of the input topic (with an epoch that fences old owners), how far
// each partition has been processed (the committed offset, the next offset to
// read) and what processing has produced so far. The State only ever changes by
// Apply, a deterministic function of (state, command). Raft orders the
// commands; Apply decides. Because offsets and results move in the same
// command, a batch of records is either applied once with its offsets or not
// at all: that is Warden's exactly-once mechanism.
//
// Apply is pure and needs no Raft, so tests and offline tools replay a
// recorded command log with Replay and get the state a node would have.
package fsm

import (
	"encoding/binary"
	"sort"

	"github.com/cespare/xxhash/v2"

	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
)

// Member is a node as the cluster records it.
type Member struct {
	ID         string `json:"id"`
	RaftAddr   string `json:"raft_addr"`
	GossipAddr string `json:"gossip_addr"`
	HTTPAddr   string `json:"http_addr"`
	// Status is the gossip view when the leader last recorded it:
	// "alive", "failed" or "left".
	Status string `json:"status"`
	Voter  bool   `json:"voter"`
}

// Member statuses.
const (
	StatusAlive  = "alive"
	StatusFailed = "failed"
	StatusLeft   = "left"
)

// Digest is the integrity summary of the records a partition has applied:
// how many, how many bytes, and an order-independent sum of a hash of each
// record's (partition, offset, value). Two sides that saw the same records
// compute the same Digest whatever the batching or order; a record lost or
// applied twice changes it.
type Digest struct {
	Records int64  `json:"records"`
	Bytes   int64  `json:"bytes"`
	Sum     uint64 `json:"sum"`
}

// Add folds o into d.
func (d *Digest) Add(o Digest) {
	d.Records += o.Records
	d.Bytes += o.Bytes
	d.Sum += o.Sum
}

// AddRecord folds one record into d.
func (d *Digest) AddRecord(partition int32, offset int64, value []byte) {
	d.Records++
	d.Bytes += int64(len(value))
	d.Sum += RecordHash(partition, offset, value)
}

// RecordHash is the 64-bit hash of one record used by Digest.
func RecordHash(partition int32, offset int64, value []byte) uint64 {
	var hdr [12]byte
	binary.BigEndian.PutUint32(hdr[0:4], uint32(partition))
	binary.BigEndian.PutUint64(hdr[4:12], uint64(offset))
	h := xxhash.New()
	_, _ = h.Write(hdr[:])
	_, _ = h.Write(value)
	return h.Sum64()
}

// Partition is the replicated record of one input partition.
type Partition struct {
	Partition int32 `json:"partition"`
	// Owner is the node that may commit batches of this partition; "" when
	// no member is eligible.
	Owner string `json:"owner"`
	// Epoch grows by one at every change of owner (or reset of the offset).
	// A worker carries the epoch it started with, and the FSM rejects its
	// commits once the epoch has moved on.
	Epoch uint64 `json:"epoch"`
	// Committed is the next offset to read: every record below it has been
	// applied exactly once.
	Committed int64 `json:"committed_offset"`
	// Commits counts the batches applied.
	Commits uint64 `json:"commits"`
	// Run is the worker run of the last input batch applied (Batch.Run).
	Run    uint64 `json:"run,omitempty"`
	Digest Digest `json:"digest"`
	// History is who committed what under each recent epoch: one entry per
	// (epoch, node) run of commits, the last MaxHistory of them. Checkers
	// read it to prove that offsets never went back and that no two nodes
	// committed under one epoch.
	History []EpochRun `json:"history,omitempty"`
	// Resets is the operators' recent resets of this partition (replays
	// and skips); Skipped the ranges skipped forward, never read.
	Resets  []ResetRecord `json:"resets,omitempty"`
	Skipped []OffsetRange `json:"skipped,omitempty"`
	// StartOffset is where the cluster began reading the partition when it
	// first saw it (--start-offset).
	StartOffset int64 `json:"start_offset,omitempty"`
	// Processed is the next offset whose results are not applied yet. It
	// equals Committed under exactly-once; under at-least-once it runs
	// ahead (offsets commit on an interval), under at-most-once behind
	// (offsets commit first). See fsm/semantics.go.
	Processed int64 `json:"processed_offset"`
	// Lost counts the records retention deleted before they were read;
	// LostRanges are the latest such ranges.
	Lost       int64         `json:"lost,omitempty"`
	LostRanges []OffsetRange `json:"lost_ranges,omitempty"`
	// Watermark is the partition's watermark at Committed: the latest
	// event time of its records (pipeline.Clock); Late counts the events
	// more than the cluster's max lateness older than it.
	Watermark int64 `json:"watermark,omitempty"`
	Late      int64 `json:"late,omitempty"`
	// ByClient is the second stage's record of this partition of the
	// repartition topic (fsm/repart.go).
	ByClient ByClient `json:"by_client"`
	// Detector is where the partition's detector state stands
	// (checkpoint.go).
	Detector Checkpoint `json:"detector_checkpoint"`
}

// EpochRun is a run of commits by one node under one epoch: [From, Until).
type EpochRun struct {
	Epoch   uint64 `json:"epoch"`
	Node    string `json:"node"`
	From    int64  `json:"from"`
	Until   int64  `json:"until"`
	Commits uint64 `json:"commits"`
}

// MaxHistory bounds Partition.History.
const MaxHistory = 64

// record notes an applied batch in the history.
func (p *Partition) record(node string, from, until int64) {
	if n := len(p.History); n > 0 {
		last := &p.History[n-1]
		if last.Epoch == p.Epoch && last.Node == node && last.Until == from {
			last.Until = until
			last.Commits++
			return
		}
	}
	p.History = append(p.History, EpochRun{Epoch: p.Epoch, Node: node, From: from, Until: until, Commits: 1})
	if over := len(p.History) - MaxHistory; over > 0 {
		p.History = append(p.History[:0:0], p.History[over:]...)
	}
}

// State is everything the cluster agrees on. Its JSON form is the snapshot.
type State struct {
	Topic      string            `json:"topic"`
	Members    map[string]Member `json:"members"`
	Partitions []Partition       `json:"partitions"`
	// Config is the processing configuration every worker uses, set by the
	// leader from its flags; nil until the first leader sets it.
	Config *Config `json:"config,omitempty"`
	// Analytics holds the load figures of every applied record.
	Analytics *analytics.Store `json:"analytics"`
	// Malformed is the most recent lines that did not parse, at most
	// MaxMalformedSample of them.
	Malformed []BadRecord `json:"malformed_sample"`
	// Detect is the detector state of each partition (buckets per client
	// IP and scenario); Book the alerts, decisions and alert outbox.
	// Each replica keeps a partition's detector state in its binary form
	// (detect.Stored): it never reads a bucket.
	Detect map[int32]*detect.Stored `json:"detect"`
	Book   *detect.Book             `json:"book"`
	// OperatorAlerts are the latest things an operator must know about
	// the cluster itself (records lost to retention, ...).
	OperatorAlerts []OperatorAlert `json:"operator_alerts,omitempty"`
	// Bouncers holds each bouncer instance's recent stream answers, so
	// that any node answers its next pull from the same place;
	// BouncersPrunedAt is the command time of the last scan for idle ones.
	Bouncers         map[string]*Bouncer `json:"bouncers,omitempty"`
	BouncersPrunedAt int64               `json:"bouncers_pruned_at,omitempty"`
	// Gen is the replay generation: a whole-topic replay starts a new one,
	// so that the second stage drops what the first forwarded before.
	Gen uint64 `json:"gen,omitempty"`
	// rules are compiled from Config.Rules; not serialised.
	rules *detect.Rules
}

// Config is the cluster-wide processing configuration. It lives in the FSM so
// that every worker on every node parses and keeps figures the same way.
//
// Version orders changes: a configure command is applied only if its version
// is above the cluster's, so an election or a node started with other flags
// never changes it; only an explicit command does (warden config apply, or a
// node whose --config-version is higher). SetBy and SetAt say who and when.
type Config struct {
	Version   uint64 `json:"version"`
	SetBy     string `json:"set_by,omitempty"`
	SetAt     string `json:"set_at,omitempty"`
	LogFormat string `json:"log_format"`
	Retention string `json:"retention"` // a Go duration; "0s" keeps all
	// Rules is the YAML of the operator's rule file applied over the
	// built-in scenarios ("" for the built-in ones alone).
	Rules string `json:"rules,omitempty"`
	// Allow is the allow-list: addresses and ranges never decided against.
	Allow []string `json:"allow,omitempty"`
	// MaxUnpublishedAlerts bounds the alerts waiting for the alerts topic
	// (0: detect.DefaultMaxUnpublished).
	MaxUnpublishedAlerts int `json:"max_unpublished_alerts,omitempty"`
	// StartOffset is where partitions the cluster has never read begin:
	// "earliest" (their log start; the default) or "latest" (their end).
	StartOffset string `json:"start_offset,omitempty"`
	// Simulate makes every decision a simulated one: alerts are raised,
	// no bouncer or blocklist gets a ban.
	Simulate bool `json:"simulate,omitempty"`
	// InputKeyedByClient says every client's lines are in one partition of
	// the input (warden ship keys them so): detection then runs on the
	// input's partitions, without the repartition stage.
	InputKeyedByClient bool `json:"input_keyed_by_client,omitempty"`
	// MaxLateness is how much older than its partition's watermark an
	// event may be and still reach detection (a Go duration; "" or "0s":
	// any).
	MaxLateness string `json:"max_lateness,omitempty"`
}

// Equal reports whether two configurations set the same processing (their
// version and origin aside).
func (c Config) Equal(o Config) bool {
	if c.LogFormat != o.LogFormat || c.Retention != o.Retention || c.Rules != o.Rules || len(c.Allow) != len(o.Allow) ||
		c.MaxUnpublishedAlerts != o.MaxUnpublishedAlerts || c.startOffset() != o.startOffset() || c.Simulate != o.Simulate ||
		c.InputKeyedByClient != o.InputKeyedByClient || c.Lateness() != o.Lateness() {
		return false
	}
	for i := range c.Allow {
		if c.Allow[i] != o.Allow[i] {
			return false
		}
	}
	return true
}

func (c Config) startOffset() string {
	if c.StartOffset == "" {
		return "earliest"
	}
	return c.StartOffset
}

// BadRecord is a record that did not parse, and where it is.
type BadRecord struct {
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Reason    string `json:"reason"`
	Line      string `json:"line"`
}

// MaxMalformedSample bounds State.Malformed; MaxBadLineBytes bounds each line
// kept in it.
const (
	MaxMalformedSample = 100
	MaxBadLineBytes    = 1024
)

// NewState returns the empty state for topic.
func NewState(topic string) *State {
	return &State{Topic: topic, Members: map[string]Member{}, Analytics: analytics.NewStore(analytics.DefaultConfig()),
		Detect: map[int32]*detect.Stored{}, Book: detect.NewBook(detect.DefaultBookConfig())}
}

// Rules returns the compiled rules of the current configuration.
func (s *State) Rules() *detect.Rules {
	if s.rules == nil {
		src := ""
		if s.Config != nil {
			src = s.Config.Rules
		}
		r, err := compileRules(src)
		if err != nil {
			r, _ = detect.Builtin() // Configure refuses rules that do not compile
		}
		s.rules = r
	}
	return s.rules
}

func compileRules(src string) (*detect.Rules, error) {
	if src == "" {
		return detect.Builtin()
	}
	return detect.Parse(detect.BuiltinYAML(), []byte(src))
}

// Clone returns a copy of s for readers: members, partitions, config and the
// malformed sample. Analytics is left out (nil): it is large, and readers
// query it through FSM.Stats under the FSM's lock.
func (s *State) Clone() *State {
	c := &State{Topic: s.Topic, Members: make(map[string]Member, len(s.Members)), Config: s.Config,
		Malformed: append([]BadRecord(nil), s.Malformed...), OperatorAlerts: append([]OperatorAlert(nil), s.OperatorAlerts...)}
	for k, v := range s.Members {
		c.Members[k] = v
	}
	c.Partitions = make([]Partition, len(s.Partitions))
	for i := range c.Partitions {
		c.Partitions[i] = s.Partitions[i].clone()
	}
	return c
}

// clone is a copy of p with its own slices: apply extends a partition's
// last history run, and its marks, in place.
func (p Partition) clone() Partition {
	p.History = append([]EpochRun(nil), p.History...)
	p.Resets = append([]ResetRecord(nil), p.Resets...)
	p.Skipped = append([]OffsetRange(nil), p.Skipped...)
	p.LostRanges = append([]OffsetRange(nil), p.LostRanges...)
	p.ByClient.Marks = append([]SourceMark(nil), p.ByClient.Marks...)
	return p
}

// Owners returns the current owner of every partition.
func (s *State) Owners() map[int32]string {
	m := make(map[int32]string, len(s.Partitions))
	for _, p := range s.Partitions {
		if p.Owner != "" {
			m[p.Partition] = p.Owner
		}
	}
	return m
}

// MemberList returns the members sorted by id.
func (s *State) MemberList() []Member {
	out := make([]Member, 0, len(s.Members))
	for _, m := range s.Members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
