package chaos

import (
	"fmt"
	"os/exec"
	"sort"
	"strings"
)

// netCut cuts packets between node addresses with an nftables table of its
// own: one drop rule per directed pair.
type netCut struct {
	table string
	pairs [][2]string
}

func nftAvailable() error {
	if _, err := exec.LookPath("nft"); err != nil {
		return fmt.Errorf("partition faults need nft (apt-get install nftables)")
	}
	if out, err := exec.Command("nft", "list", "tables").CombinedOutput(); err != nil {
		return fmt.Errorf("partition faults need nftables and root: nft: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (n *netCut) apply() error {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\ntable inet %s {\n chain out {\n  type filter hook output priority 0; policy accept;\n", n.table, n.table, n.table)
	sort.Slice(n.pairs, func(i, j int) bool { return n.pairs[i][0]+n.pairs[i][1] < n.pairs[j][0]+n.pairs[j][1] })
	for _, p := range n.pairs {
		fmt.Fprintf(&b, "  ip saddr %s ip daddr %s drop\n", p[0], p[1])
	}
	b.WriteString(" }\n}\n")
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %v: %s", err, out)
	}
	return nil
}

func (n *netCut) heal() {
	_ = exec.Command("nft", "delete", "table", "inet", n.table).Run()
}
