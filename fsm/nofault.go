//go:build !wardenfault

package fsm

// FaultsEnabled reports whether this build can inject test faults: never in
// a build without the wardenfault tag, whatever the environment says.
const FaultsEnabled = false

func faultAt(*Partition) string { return "" }

func byClientFault(*Partition, Batch) string { return "" }
