package chaos

import (
	"reflect"
	"testing"
	"time"
)

func TestScheduleIsAFunctionOfTheSeed(t *testing.T) {
	a := Schedule(42, AllFaults, 10*time.Minute, 5500*time.Millisecond)
	b := Schedule(42, AllFaults, 10*time.Minute, 5500*time.Millisecond)
	c := Schedule(43, AllFaults, 10*time.Minute, 5500*time.Millisecond)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed gave two schedules")
	}
	if reflect.DeepEqual(a, c) {
		t.Fatal("another seed gave the same schedule")
	}
	if len(a) < 100 {
		t.Errorf("%d faults in 10 minutes at one per 5.5 s", len(a))
	}
	kinds := map[string]bool{}
	for i, s := range a {
		kinds[s.Kind] = true
		if i > 0 && s.At <= a[i-1].At {
			t.Fatalf("steps out of order at %d", i)
		}
		if s.Hold < 1500*time.Millisecond || s.At+s.Hold > 10*time.Minute {
			t.Errorf("step %d: hold %s at %s", i, s.Hold, s.At)
		}
	}
	for _, k := range AllFaults {
		if !kinds[k] {
			t.Errorf("kind %s never scheduled", k)
		}
	}
	short := Schedule(1, AllFaults, 20*time.Second, 6*time.Second)
	if len(short) != len(AllFaults) {
		t.Errorf("a short run has %d steps, want one of each of %d kinds", len(short), len(AllFaults))
	}
}

func TestParseFaults(t *testing.T) {
	if k, err := ParseFaults("kill,partition"); err != nil || len(k) != 2 {
		t.Errorf("%v %v", k, err)
	}
	if k, err := ParseFaults("none"); err != nil || len(k) != 0 {
		t.Errorf("none: %v %v", k, err)
	}
	if _, err := ParseFaults("kill,meteor"); err == nil {
		t.Error("unknown fault accepted")
	}
}
