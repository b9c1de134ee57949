//go:build !wardenfault

package fsm

import "testing"

// A build without the wardenfault tag, as every release is, cannot be made
// to break the FSM's rules, whatever the environment says.
func TestRelease_NoTestFault(t *testing.T) {
	if FaultsEnabled {
		t.Fatal("FaultsEnabled in a build without the wardenfault tag")
	}
	for _, fault := range []string{"skip-commit", "double-apply", "offset-back"} {
		t.Setenv("WARDEN_TEST_FAULT", fault)
		s := assigned(1, "n1")
		for i := int64(0); i < 30; i++ {
			if err := commit(s, Batch{Node: "n1", Partition: 0, Epoch: 1, From: i * 10, Until: i*10 + 10,
				Digest: Digest{Records: 10}}); err != nil {
				t.Fatalf("%s: batch %d: %v", fault, i, err)
			}
		}
		if p := s.Partitions[0]; p.Committed != 300 || p.Digest.Records != 300 || p.Commits != 30 {
			t.Errorf("%s: committed %d, records %d, commits %d; want 300, 300, 30", fault, p.Committed, p.Digest.Records, p.Commits)
		}
	}
}
