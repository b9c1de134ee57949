// Package partitioner decides which node owns which partition.
//
// Assign is a pure function of (current owners, members, partition count).
// It balances (owners differ by at most one partition), it is sticky (a
// partition stays with its owner unless that owner has more than its share or
// has gone) and it moves the fewest partitions that reach balance, so a join
// or a death pauses only the partitions that must move. It is deterministic:
// every node computes the same answer from the same inputs.
package partitioner

import "sort"

// Move is one change of owner.
type Move struct {
	Partition int32
	From, To  string // From is "" when the partition had no owner
}

// Assign returns the new owner of every partition 0..partitions-1.
// current may be partial and may name owners that are no longer members;
// members is the set of nodes eligible to own partitions (order and
// duplicates do not matter). With no members the result is empty.
func Assign(current map[int32]string, members []string, partitions int32) map[int32]string {
	out := make(map[int32]string, partitions)
	ms := dedupSorted(members)
	if len(ms) == 0 || partitions <= 0 {
		return out
	}
	isMember := make(map[string]bool, len(ms))
	for _, m := range ms {
		isMember[m] = true
	}
	// What each member keeps today, partitions in ascending order.
	owned := make(map[string][]int32, len(ms))
	for p := int32(0); p < partitions; p++ {
		if o, ok := current[p]; ok && isMember[o] {
			owned[o] = append(owned[o], p)
		}
	}
	// Quotas: everyone gets floor(P/M); the P mod M extra slots go to the
	// members that already hold the most (so fewer partitions move), ties
	// by name.
	base, extra := int(partitions)/len(ms), int(partitions)%len(ms)
	order := append([]string(nil), ms...)
	sort.SliceStable(order, func(i, j int) bool { return len(owned[order[i]]) > len(owned[order[j]]) })
	quota := make(map[string]int, len(ms))
	for i, m := range order {
		quota[m] = base
		if i < extra {
			quota[m]++
		}
	}
	// Keep up to quota (the lowest partition numbers); free the rest.
	var free []int32
	for p := int32(0); p < partitions; p++ {
		if o, ok := current[p]; !ok || !isMember[o] {
			free = append(free, p)
		}
	}
	count := make(map[string]int, len(ms))
	for _, m := range ms {
		ps := owned[m]
		keep := min(len(ps), quota[m])
		for _, p := range ps[:keep] {
			out[p] = m
		}
		free = append(free, ps[keep:]...)
		count[m] = keep
	}
	sort.Slice(free, func(i, j int) bool { return free[i] < free[j] })
	// Hand the free partitions, in ascending order, to members below quota
	// in name order.
	i := 0
	for _, m := range ms {
		for count[m] < quota[m] && i < len(free) {
			out[free[i]] = m
			count[m]++
			i++
		}
	}
	return out
}

// Moves lists the partitions whose owner differs between old and next,
// sorted by partition.
func Moves(old, next map[int32]string) []Move {
	var out []Move
	for p, to := range next {
		if from := old[p]; from != to {
			out = append(out, Move{Partition: p, From: from, To: to})
		}
	}
	for p, from := range old {
		if _, ok := next[p]; !ok && from != "" {
			out = append(out, Move{Partition: p, From: from, To: ""})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Partition < out[j].Partition })
	return out
}

func dedupSorted(in []string) []string {
	out := make([]string, 0, len(in))
	seen := make(map[string]bool, len(in))
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}
