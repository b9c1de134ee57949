//go:build !wardenfault

package node

// crashAfterForward does nothing in a build without the wardenfault tag,
// whatever the environment says (see fault.go).
func (n *Node) crashAfterForward(int) {}

// hangOnStop does nothing in a build without the wardenfault tag (see
// fault.go).
func (n *Node) hangOnStop() {}
