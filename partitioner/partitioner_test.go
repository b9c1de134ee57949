package partitioner

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

func counts(a map[int32]string) map[string]int {
	c := map[string]int{}
	for _, o := range a {
		c[o]++
	}
	return c
}

func checkBalanced(t *testing.T, a map[int32]string, members []string, partitions int32) {
	t.Helper()
	if len(members) == 0 {
		return
	}
	if int32(len(a)) != partitions {
		t.Fatalf("%d partitions assigned, want %d", len(a), partitions)
	}
	isMember := map[string]bool{}
	for _, m := range members {
		isMember[m] = true
	}
	for p := int32(0); p < partitions; p++ {
		if !isMember[a[p]] {
			t.Fatalf("partition %d owned by %q, not a member", p, a[p])
		}
	}
	c := counts(a)
	lo, hi := int(partitions), 0
	for m := range isMember {
		lo, hi = min(lo, c[m]), max(hi, c[m])
	}
	if hi-lo > 1 {
		t.Fatalf("unbalanced: %v", c)
	}
}

// keepable is how many partitions can stay where they are in any balanced
// assignment: each member keeps at most its quota, and the extra slots are
// best spent on the members holding the most.
func keepable(current map[int32]string, members []string, partitions int32) int {
	ms := dedupSorted(members)
	if len(ms) == 0 {
		return 0
	}
	c := map[string]int{}
	for p := int32(0); p < partitions; p++ {
		c[current[p]]++
	}
	var held []int
	for _, m := range ms {
		held = append(held, c[m])
	}
	// descending
	for i := range held {
		for j := i + 1; j < len(held); j++ {
			if held[j] > held[i] {
				held[i], held[j] = held[j], held[i]
			}
		}
	}
	base, extra := int(partitions)/len(ms), int(partitions)%len(ms)
	k := 0
	for i, h := range held {
		q := base
		if i < extra {
			q++
		}
		k += min(h, q)
	}
	return k
}

func TestAssign_Table(t *testing.T) {
	tests := []struct {
		name       string
		current    map[int32]string
		members    []string
		partitions int32
		wantMoves  int
	}{
		{"fresh", nil, []string{"a", "b", "c"}, 12, 12},
		{"stable", map[int32]string{0: "a", 1: "b", 2: "c", 3: "a", 4: "b", 5: "c"}, []string{"c", "b", "a"}, 6, 0},
		{"join takes only its share", map[int32]string{0: "a", 1: "b", 2: "c", 3: "a", 4: "b", 5: "c", 6: "a", 7: "b", 8: "c", 9: "a", 10: "b", 11: "c"}, []string{"a", "b", "c", "d"}, 12, 3},
		{"death moves only the dead node's", map[int32]string{0: "a", 1: "b", 2: "c", 3: "a", 4: "b", 5: "c"}, []string{"a", "b"}, 6, 2},
		{"new partitions", map[int32]string{0: "a", 1: "b"}, []string{"a", "b"}, 4, 2},
		{"no members", map[int32]string{0: "a"}, nil, 4, 1},
		{"more members than partitions", nil, []string{"a", "b", "c", "d", "e"}, 3, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Assign(tt.current, tt.members, tt.partitions)
			checkBalanced(t, got, tt.members, tt.partitions)
			if mv := Moves(tt.current, got); len(mv) != tt.wantMoves {
				t.Fatalf("moves = %v, want %d", mv, tt.wantMoves)
			}
		})
	}
}

func TestAssign_DeathMovesOnlyTheDeadNodes(t *testing.T) {
	cur := Assign(nil, []string{"a", "b", "c"}, 12)
	next := Assign(cur, []string{"a", "c"}, 12)
	for _, mv := range Moves(cur, next) {
		if mv.From != "b" {
			t.Fatalf("partition %d moved from live node %s", mv.Partition, mv.From)
		}
	}
	checkBalanced(t, next, []string{"a", "c"}, 12)
}

func TestAssign_Deterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 200; i++ {
		members := []string{"n1", "n2", "n3", "n4", "n5"}[:1+r.IntN(5)]
		cur := map[int32]string{}
		for p := int32(0); p < 40; p++ {
			cur[p] = fmt.Sprintf("n%d", r.IntN(7))
		}
		want := Assign(cur, members, 40)
		shuffled := append([]string(nil), members...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		shuffled = append(shuffled, shuffled[0]) // a duplicate changes nothing
		if got := Assign(cur, shuffled, 40); !reflect.DeepEqual(got, want) {
			t.Fatalf("member order changed the result")
		}
	}
}

func TestAssign_DoesNotMutateInputs(t *testing.T) {
	cur := map[int32]string{0: "x", 1: "a"}
	members := []string{"b", "a"}
	Assign(cur, members, 4)
	if !reflect.DeepEqual(cur, map[int32]string{0: "x", 1: "a"}) || members[0] != "b" {
		t.Fatal("inputs mutated")
	}
}

func TestAssign_Property(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 1))
	for i := 0; i < 3000; i++ {
		nm := 1 + r.IntN(20)
		var members []string
		for j := 0; j < nm; j++ {
			members = append(members, fmt.Sprintf("m%02d", j))
		}
		partitions := int32(r.IntN(301))
		cur := map[int32]string{}
		for p := int32(0); p < partitions; p++ {
			if r.IntN(10) > 0 { // gaps
				cur[p] = fmt.Sprintf("m%02d", r.IntN(nm+5)) // strangers too
			}
		}
		got := Assign(cur, members, partitions)
		checkBalanced(t, got, members, partitions)
		moved := len(Moves(cur, got))
		// Partitions beyond the count that were owned count as moves too.
		if want := int(partitions) - keepable(cur, members, partitions); moved != want {
			t.Fatalf("case %d: moved %d, minimum is %d", i, moved, want)
		}
	}
}

func BenchmarkAssign(b *testing.B) {
	members := []string{"a", "b", "c", "d", "e"}
	cur := Assign(nil, members[:4], 1000)
	b.ReportAllocs()
	for b.Loop() {
		Assign(cur, members, 1000)
	}
}
