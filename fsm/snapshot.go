package fsm

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/hashicorp/raft"

	"github.com/wardenhq/warden/analytics"
	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/internal/wire"
)

// A snapshot is binary, the bulk of it in the encodings of Raft commits:
//
//	magic (snapshotMagic, whose last byte is the version)
//	rest:      bytes: JSON of the State without analytics and detector
//	           state (members, partitions, configuration, book, bouncers,
//	           operator alerts, malformed sample)
//	analytics: bytes: analytics.Frozen's form of the Store
//	n, detector state × n (bytes each, detect.FrozenState's form), by
//	           partition
//
// The magic's first byte starts no JSON text: ReadSnapshot also reads the
// JSON snapshots of earlier releases (the State as JSON).
//
// Snapshot holds the FSM's lock only to freeze the state (freeze): copies
// of what applies change in place, sharing what they never change or copy
// before changing; Persist sorts and encodes while applies go on, and
// Release ends the sharing.
var snapshotMagic = []byte{0xB5, 'W', 'S', 'N', 'P', snapshotVersion}

const snapshotVersion = 1

// frozen is a State as it was when freeze returned; it is the snapshot
// Raft persists.
type frozen struct {
	rest      *State // without Analytics and Detect
	analytics analytics.Frozen
	detect    []*detect.FrozenState // by partition
}

var _ raft.FSMSnapshot = (*frozen)(nil)

// freeze copies s for a snapshot, sharing what applies do not change in
// place (the detector states' bytes, the load figures' keys). It must be
// fast: applies wait for it. The caller holds the state's lock.
// Every field of State must be taken here (TestSnapshot_BinaryRoundTrip
// compares the whole state's JSON).
func freeze(s *State) *frozen {
	rest := s.Clone()
	rest.Book = s.Book.Clone()
	rest.Gen, rest.BouncersPrunedAt = s.Gen, s.BouncersPrunedAt
	if s.Bouncers != nil {
		rest.Bouncers = make(map[string]*Bouncer, len(s.Bouncers))
		for id, b := range s.Bouncers {
			if b == nil { // only a JSON snapshot can hold one
				continue
			}
			c := *b
			c.History = slices.Clone(b.History)
			rest.Bouncers[id] = &c
		}
	}
	f := &frozen{rest: rest, analytics: s.Analytics.Freeze(), detect: make([]*detect.FrozenState, 0, len(s.Detect))}
	for p, ps := range s.Detect {
		if ps == nil {
			continue
		}
		f.detect = append(f.detect, ps.Freeze(p))
	}
	slices.SortFunc(f.detect, func(a, b *detect.FrozenState) int { return int(a.Partition()) - int(b.Partition()) })
	return f
}

// writeTo writes the snapshot to w.
func (f *frozen) writeTo(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	_, _ = bw.Write(snapshotMagic)
	rest, err := json.Marshal(f.rest)
	if err != nil {
		return err
	}
	_, _ = bw.Write(wire.AppendBytes(nil, rest))
	// One buffer, sized for the load figures up front (the bulk: growing
	// it by doubling would allocate twice their size), then reused for
	// each partition's detector state.
	buf := wire.AppendSized(make([]byte, 0, f.analytics.SizeHint()), f.analytics.AppendBinary)
	_, _ = bw.Write(buf)
	_, _ = bw.Write(wire.AppendUint(nil, uint64(len(f.detect))))
	for _, d := range f.detect {
		buf = wire.AppendSized(buf[:0], d.AppendBinary)
		_, _ = bw.Write(buf)
	}
	return bw.Flush()
}

// Persist implements raft.FSMSnapshot: it encodes the frozen state, under
// no lock.
func (f *frozen) Persist(sink raft.SnapshotSink) error {
	if err := f.writeTo(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("fsm: persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot. There is nothing to give back: the
// frozen state shares only bytes that applies never change.
func (f *frozen) Release() {}

// WriteSnapshot writes s as Snapshot would (for tools and tests that hold
// a State outside an FSM).
func WriteSnapshot(w io.Writer, s *State) error {
	f := freeze(s)
	if err := f.writeTo(w); err != nil {
		return fmt.Errorf("fsm: write snapshot: %w", err)
	}
	return nil
}

// readSnapshot reads a snapshot of either form: binary, or the JSON of
// earlier releases.
func readSnapshot(r io.Reader) (*State, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	head, _ := br.Peek(len(snapshotMagic))
	if len(head) == 0 || head[0] != snapshotMagic[0] {
		s := &State{}
		if err := json.NewDecoder(br).Decode(s); err != nil {
			return nil, err
		}
		return s, nil
	}
	data, err := io.ReadAll(br)
	if err != nil {
		return nil, err
	}
	return decodeSnapshot(data)
}

// decodeSnapshot reads a binary snapshot. Every part is checked before it
// is built; corrupt bytes are an error.
func decodeSnapshot(data []byte) (*State, error) {
	n := len(snapshotMagic)
	if len(data) < n || !bytes.Equal(data[:n-1], snapshotMagic[:n-1]) {
		return nil, fmt.Errorf("neither a binary snapshot nor JSON")
	}
	if v := data[n-1]; v != snapshotVersion {
		return nil, fmt.Errorf("snapshot format %d: this release reads format %d (a newer release wrote it)", v, snapshotVersion)
	}
	r := wire.NewReader(data[n:])
	rest, store := r.Bytes(), r.Bytes()
	parts := make([][]byte, r.Count(1))
	for i := range parts {
		parts[i] = r.Bytes()
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%d bytes left over", r.Len())
	}
	s := &State{}
	if err := json.Unmarshal(rest, s); err != nil {
		return nil, err
	}
	if s.Analytics != nil || s.Detect != nil {
		return nil, fmt.Errorf("analytics or detector state in the JSON part")
	}
	var err error
	if s.Analytics, err = analytics.DecodeStore(store); err != nil {
		return nil, err
	}
	s.Detect = make(map[int32]*detect.Stored, len(parts))
	var prev int32
	for i, b := range parts {
		p, ps, err := detect.DecodeStored(b)
		if err != nil {
			return nil, err
		}
		if i > 0 && p <= prev {
			return nil, fmt.Errorf("detector states out of partition order")
		}
		s.Detect[p], prev = ps, p
	}
	return s, nil
}
