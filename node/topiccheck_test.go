package node

import (
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/wardenhq/warden/fsm"
)

func TestCheckTopic(t *testing.T) {
	listed := func(ends ...int64) kadm.ListedOffsets {
		m := map[int32]kadm.ListedOffset{}
		for p, e := range ends {
			m[int32(p)] = kadm.ListedOffset{Topic: "t", Partition: int32(p), Offset: e}
		}
		return kadm.ListedOffsets{"t": m}
	}
	missing := kadm.ListedOffsets{"t": {-1: {Topic: "t", Partition: -1, Err: kerr.UnknownTopicOrPartition}}}
	state := func(committed ...int64) *fsm.State {
		s := &fsm.State{}
		for p, c := range committed {
			s.Partitions = append(s.Partitions, fsm.Partition{Partition: int32(p), Committed: c})
		}
		return s
	}
	for _, tc := range []struct {
		name  string
		ends  kadm.ListedOffsets
		state *fsm.State
		want  error
	}{
		{"fresh cluster", listed(0, 0), state(), nil},
		{"caught up", listed(10, 5), state(10, 3), nil},
		{"more partitions than known", listed(1, 1, 1), state(1, 1), nil},
		{"missing, fresh", missing, state(), ErrTopicMissing},
		{"missing, known", missing, state(4, 4), ErrTopicMissing},
		{"shrunk", listed(9, 9), state(1, 1, 1), ErrTopicShrunk},
		{"below commit", listed(10, 2), state(10, 3), ErrTopicBelowCommit},
	} {
		err := checkTopic("t", tc.ends, tc.state)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: checkTopic = %v, want %v", tc.name, err, tc.want)
		}
	}
}
