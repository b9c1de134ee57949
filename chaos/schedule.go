// Package chaos proves Warden's promise the way Jepsen does: it starts a
// real multi-process cluster (the warden binary: a broker and N agents, each
// with its own data dir, ports and loopback address), writes a seeded
// workload while it hurts the cluster (SIGKILL, SIGSTOP, wiped data dirs,
// network partitions cut with nftables, membership churn, broker restarts),
// heals everything, and then checks from the outside (CLI, HTTP and Kafka
// only) that no record was lost or counted twice, that offsets never went
// back, that every replica converged, and that the figures and alerts equal
// `warden analyze` on exactly the records in the topic.
package chaos

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"
)

// Fault kinds, as named on the command line.
const (
	Kill          = "kill"
	Pause         = "pause"
	Partition     = "partition"
	Wipe          = "wipe"
	Churn         = "churn"
	BrokerRestart = "broker-restart"
)

// AllFaults lists every kind.
var AllFaults = []string{Kill, Pause, Partition, Wipe, Churn, BrokerRestart}

// Step is one scheduled fault: its kind and variant, when it starts after
// the run begins, how long it holds, and a number that picks its targets
// among the nodes in the roles the variant names.
type Step struct {
	At      time.Duration
	Kind    string
	Variant string
	Hold    time.Duration
	Pick    uint64
}

func (s Step) String() string {
	return fmt.Sprintf("%6.1fs %-14s %-14s hold %.1fs", s.At.Seconds(), s.Kind, s.Variant, s.Hold.Seconds())
}

var variants = map[string][]string{
	Kill:          {"leader", "follower", "majority"},
	Pause:         {"leader", "follower"},
	Partition:     {"isolate-leader", "halves", "one-way"},
	Wipe:          {"follower"},
	Churn:         {"leave-rejoin", "join-leave"},
	BrokerRestart: {"sigterm"},
}

// ParseFaults reads "kill,pause,..." ("all" for every kind, "none" for no
// fault).
func ParseFaults(s string) ([]string, error) {
	if s == "" || s == "all" {
		return AllFaults, nil
	}
	if s == "none" {
		return nil, nil
	}
	var out []string
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		if _, ok := variants[k]; !ok {
			return nil, fmt.Errorf("unknown fault %q: want some of %s (or all, none)", k, strings.Join(AllFaults, ","))
		}
		out = append(out, k)
	}
	return out, nil
}

// Schedule lays out the faults of a run from the seed alone: the same seed,
// kinds, duration and spacing give the same schedule. Every kind appears at
// least once; after the first round the kinds come in seeded random order.
func Schedule(seed uint64, kinds []string, duration, every time.Duration) []Step {
	if len(kinds) == 0 || duration <= 0 {
		return nil
	}
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	n := int(duration / every)
	if n < len(kinds) {
		n = len(kinds)
	}
	slot := duration / time.Duration(n+1)
	order := append([]string(nil), kinds...)
	sort.Strings(order)
	r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	var steps []Step
	for i := 0; i < n; i++ {
		kind := order[i%len(order)]
		if i >= len(order) {
			kind = order[r.IntN(len(order))]
		}
		vs := variants[kind]
		v := vs[r.IntN(len(vs))]
		// Holds last longer than the election timeout, shorter than a slot.
		hold := time.Duration(float64(slot) * (0.3 + 0.3*r.Float64()))
		hold = min(max(hold, 1500*time.Millisecond), 6*time.Second)
		steps = append(steps, Step{At: slot * time.Duration(i+1), Kind: kind, Variant: v, Hold: hold, Pick: r.Uint64()})
	}
	return steps
}
