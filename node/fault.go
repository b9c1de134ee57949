//go:build wardenfault

package node

import (
	"os"
	"path/filepath"
	"syscall"
)

// crashAfterForward, in a binary built with the wardenfault tag and
// $WARDEN_TEST_FAULT=crash-after-forward, kills this process with SIGKILL
// once its first stage has forwarded its first batch of a partition to the
// repartition topic and before that batch commits: the window in which a
// crash makes the next owner forward the same lines again. A file in the
// data dir makes it happen once per node. It exists only for the tests that
// show the second stage drops those repeats.
func (n *Node) crashAfterForward(batches int) {
	if os.Getenv("WARDEN_TEST_FAULT") != "crash-after-forward" || batches != 1 {
		return
	}
	mark := filepath.Join(n.cfg.DataDir, "crashed-after-forward")
	if _, err := os.Stat(mark); err == nil {
		return
	}
	if err := os.WriteFile(mark, nil, 0o600); err != nil {
		return
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
}

// hangOnStop, with $WARDEN_TEST_FAULT=hang-on-stop, makes node n1's clean
// stop never end, as a wedged Raft replication once made it: the chaos
// checker's test shows that such a stop fails the run.
func (n *Node) hangOnStop() {
	if os.Getenv("WARDEN_TEST_FAULT") == "hang-on-stop" && n.cfg.ID == "n1" {
		select {}
	}
}
