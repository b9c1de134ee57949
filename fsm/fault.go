//go:build wardenfault

package fsm

import "os"

// testFault, read from $WARDEN_TEST_FAULT in a binary built with the
// wardenfault tag (go build -tags wardenfault), makes Apply break its own
// rules once, on partition 0's 20th batch: "skip-commit", "double-apply" or
// "offset-back". It exists only so that the chaos checker's own tests can
// show it catches each kind of violation. A release build has no such
// switch: see nofault.go.
var testFault = os.Getenv("WARDEN_TEST_FAULT")

// FaultsEnabled reports whether this build can inject test faults.
const FaultsEnabled = true

func faultAt(p *Partition) string {
	if testFault != "" && p.Partition == 0 && p.Commits == 19 {
		return testFault
	}
	return ""
}
