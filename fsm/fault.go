//go:build wardenfault

package fsm

import (
	"os"
	"sync"
)

// testFault, read from $WARDEN_TEST_FAULT in a binary built with the
// wardenfault tag (go build -tags wardenfault), makes Apply break its own
// rules once, on partition 0's 20th batch: "skip-commit", "double-apply" or
// "offset-back" ("skip-lines" is the second stage's: byClientFault). It
// exists only so that the chaos checker's own tests can show it catches
// each kind of violation. A release build has no such switch: see
// nofault.go.
var testFault = os.Getenv("WARDEN_TEST_FAULT")

// byClientFault is the second stage's: "skip-lines" makes partition 0's
// 5th second-stage batch that released lines move its marks and offset
// without applying them, as a stale worker run's batch once did.
// The count is the process's: every node applies the same log, and the
// fault's test restarts none.
func byClientFault(p *Partition, b Batch) string {
	if testFault != "skip-lines" || p.Partition != 0 || b.Merge.Applied == 0 {
		return ""
	}
	faultMu.Lock()
	defer faultMu.Unlock()
	if faultSeen++; faultSeen == 5 {
		return testFault
	}
	return ""
}

var (
	faultMu   sync.Mutex
	faultSeen int
)

// FaultsEnabled reports whether this build can inject test faults.
const FaultsEnabled = true

func faultAt(p *Partition) string {
	if testFault != "" && p.Partition == 0 && p.Commits == 19 {
		return testFault
	}
	return ""
}
