package fsm

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
)

// FSM adapts State to raft.FSM. It decodes log entries, calls Apply under
// a lock and tells watchers that something changed. All decisions are in Apply.
type FSM struct {
	mu      sync.RWMutex
	state   *State
	applied uint64
	changed chan struct{}
	// OnApply, when set, is called after each command with its result, under
	// no lock. Nodes use it for metrics.
	OnApply func(Command, Result)
	// entries and bytes count the log entries applied and their size.
	entries, bytes atomic.Uint64
}

// EntriesApplied returns the Raft log entries applied by this replica and
// their total size in bytes.
func (f *FSM) EntriesApplied() (entries, bytes uint64) { return f.entries.Load(), f.bytes.Load() }

var _ raft.FSM = (*FSM)(nil)

// New returns an FSM holding the empty state for topic.
func New(topic string) *FSM {
	return &FSM{state: NewState(topic), changed: make(chan struct{}, 1)}
}

// Apply implements raft.FSM. It returns a Result.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return Result{}
	}
	f.entries.Add(1)
	f.bytes.Add(uint64(len(l.Data)))
	cmd, err := Decode(l.Data)
	if err != nil {
		// A command nobody can read changes nothing, on every node alike.
		f.mu.Lock()
		f.applied = l.Index
		f.mu.Unlock()
		return Result{Err: err.Error()}
	}
	f.mu.Lock()
	res := Apply(f.state, cmd)
	f.applied = l.Index
	f.mu.Unlock()
	f.notify()
	if f.OnApply != nil {
		f.OnApply(cmd, res)
	}
	return res
}

func (f *FSM) notify() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// Changed is signalled (coalesced) after every applied command or restore.
func (f *FSM) Changed() <-chan struct{} { return f.changed }

// View returns a copy of the current state and the last applied index.
func (f *FSM) View() (*State, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Clone(), f.applied
}

// Owned returns copies of the partitions owner owns and the cluster's
// configuration: what a node's workers are
// managed by, read on every apply, without copying the rest of the state
// (a topic of 1,000 partitions is 5,000 slices a copy).
func (f *FSM) Owned(owner string) ([]Partition, *Config) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []Partition
	for i := range f.state.Partitions {
		if f.state.Partitions[i].Owner == owner {
			out = append(out, f.state.Partitions[i].clone())
		}
	}
	return out, f.state.Config
}

// PartitionCount is the number of the input topic's partitions the
// cluster knows.
func (f *FSM) PartitionCount() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.state.Partitions)
}

// Stats returns the load figures for q from the current state.
func (f *FSM) Stats(q analytics.Query) *analytics.Stats {
	f.mu.RLock()
	defer f.mu.RUnlock()
	// Apply waits for one window's merge at most, not the whole query's.
	return f.state.Analytics.StatsYielding(q, func() {
		f.mu.RUnlock()
		if statsPause != nil {
			statsPause()
		}
		f.mu.RLock()
	})
}

// statsPause, set by tests, runs in Stats between two windows, with the
// lock released.
var statsPause func()

// LastMinute returns the rates of the last complete minute of event time.
func (f *FSM) LastMinute() analytics.Rates {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Analytics.LastMinute()
}

// Malformed returns how many lines did not parse, and the recent ones.
func (f *FSM) Malformed() int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Analytics.Malformed()
}

// Rules returns the compiled detection rules of the configuration.
func (f *FSM) Rules() *detect.Rules {
	f.mu.Lock() // compiles on first use
	defer f.mu.Unlock()
	return f.state.Rules()
}

// WorkerStart returns, read together, partition p's record and a copy of
// its detector state: a worker resumes from exactly that pair. Under the
// lock the state is only frozen (its bytes shared, which applies never
// change); it is decoded after, so applies do not wait on a large state.
func (f *FSM) WorkerStart(p int32) (Partition, *detect.PartitionState, bool) {
	f.mu.RLock()
	part, frozen, ok := f.workerStart(p)
	f.mu.RUnlock()
	return part, frozen.State(), ok
}

// workerStart is WorkerStart under the read lock. The record is a copy:
// apply changes the marks in place. The detector state is nil if the
// partition has none.
func (f *FSM) workerStart(p int32) (Partition, *detect.FrozenState, bool) {
	if p < 0 || int(p) >= len(f.state.Partitions) {
		return Partition{}, nil, false
	}
	var ds *detect.FrozenState
	if st := f.state.Detect[p]; st != nil {
		ds = st.Freeze(p)
	}
	part := f.state.Partitions[p]
	part.ByClient.Marks = append([]SourceMark(nil), part.ByClient.Marks...)
	return part, ds, true
}

// UnpublishedAlerts returns how many alerts wait for the alerts topic and
// how many were dropped waiting.
func (f *FSM) UnpublishedAlerts() (waiting int, dropped uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Book.Unpublished(), f.state.Book.UnpublishedDropped
}

// AlertCount is the number of alerts raised so far.
func (f *FSM) AlertCount() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Book.NextSeq - 1
}

// ActiveDecisions is the number of decisions in force now.
func (f *FSM) ActiveDecisions() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.state.Book.ActiveDecisions(time.Now()))
}

// Alerts returns the alerts kept whose last event is at or after since
// (all for the zero time), oldest first.
func (f *FSM) Alerts(since time.Time) []detect.Alert {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Book.AlertsSince(since)
}

// Decisions returns the decisions in force at now, or every one kept.
func (f *FSM) Decisions(all bool, now time.Time) []detect.Decision {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if all {
		return f.state.Book.AllDecisions()
	}
	return f.state.Book.ActiveDecisions(now)
}

// Outbox returns up to limit alerts past the published mark (or past
// after, if that is further), and the mark.
func (f *FSM) Outbox(after uint64, limit int) ([]detect.Alert, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	b := f.state.Book
	if limit <= 0 {
		return nil, b.Published
	}
	from := max(after, b.Published)
	var out []detect.Alert
	for _, a := range b.Alerts {
		if a.Seq > from {
			out = append(out, a)
			if len(out) == limit {
				break
			}
		}
	}
	return out, b.Published
}

// Config returns the cluster-wide processing configuration, or nil.
func (f *FSM) Config() *Config {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Config
}

// AppliedIndex returns the index of the last applied log entry.
func (f *FSM) AppliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.applied
}

// Snapshot implements raft.FSM. Under the lock it only freezes the state
// (fsm/snapshot.go); Persist encodes it while applies go on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return freeze(f.state), nil
}

// Restore implements raft.FSM.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s, err := ReadSnapshot(rc)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.state = s
	f.mu.Unlock()
	f.notify()
	return nil
}

// ReadSnapshot decodes a snapshot written by Snapshot or WriteSnapshot, or
// the JSON snapshot of an earlier release.
func ReadSnapshot(r io.Reader) (*State, error) {
	s, err := readSnapshot(r)
	if err != nil {
		return nil, fmt.Errorf("fsm: restore: %w", err)
	}
	if s.Members == nil {
		s.Members = map[string]Member{}
	}
	if s.Analytics == nil {
		s.Analytics = analytics.NewStore(analytics.DefaultConfig())
	}
	if s.Detect == nil {
		s.Detect = map[int32]*detect.Stored{}
	}
	if s.Book == nil {
		s.Book = detect.NewBook(detect.DefaultBookConfig())
	}
	s.Book.Restore()
	return s, nil
}
