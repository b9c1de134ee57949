package clustertest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

func TestAgentFlags_Args(t *testing.T) {
	base := AgentFlags{ID: "n1", DataDir: "/d/n1", Raft: "r:1", Gossip: "g:1", HTTP: "h:1", Brokers: "b:1", Topic: "logs"}
	identity := []string{"agent", "--id", "n1", "--data-dir", "/d/n1", "--raft", "r:1", "--gossip", "g:1", "--http", "h:1",
		"--brokers", "b:1", "--topic", "logs"}
	for _, tc := range []struct {
		name string
		edit func(*AgentFlags)
		want []string
	}{
		{"defaults left out", func(*AgentFlags) {}, []string{"--bootstrap-expect", "0"}},
		{"every field", func(f *AgentFlags) {
			f.BootstrapExpect, f.Voters, f.ReapAfter, f.BatchInterval = 3, 5, 20*time.Second, 100*time.Millisecond
			f.Join, f.Extra = []string{"a:1", "b:2"}, []string{"--retention", "0"}
		}, []string{"--bootstrap-expect", "3", "--voters", "5", "--reap-after", "20s", "--batch-interval", "100ms",
			"--join", "a:1,b:2", "--retention", "0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := base
			tc.edit(&f)
			if got, want := f.Args(), append(slices.Clone(identity), tc.want...); !slices.Equal(got, want) {
				t.Errorf("Args() =\n %q\nwant\n %q", got, want)
			}
		})
	}
}

func TestPoll_HoldsTimesOutOrEndsWithTheContext(t *testing.T) {
	n := 0
	if err := Poll(context.Background(), time.Second, time.Millisecond, func() bool { n++; return n == 3 }); err != nil {
		t.Errorf("a condition that comes to hold: %v", err)
	}
	if err := Poll(context.Background(), 20*time.Millisecond, time.Millisecond, func() bool { return false }); !errors.Is(err, ErrTimeout) {
		t.Errorf("a condition that never holds: %v, want ErrTimeout", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Poll(ctx, time.Minute, time.Millisecond, func() bool { return false }); !errors.Is(err, context.Canceled) {
		t.Errorf("an ended context: %v, want context.Canceled", err)
	}
}

func TestProc_StopPauseKill(t *testing.T) {
	dir := t.TempDir()
	p, err := Start("/bin/sleep", dir, "sleeper", "60")
	if err != nil {
		t.Fatal(err)
	}
	if !p.Alive() || !slices.Equal(p.Args, []string{"60"}) {
		t.Fatalf("alive %v args %q", p.Alive(), p.Args)
	}
	if p.Stop(syscall.SIGTERM, 5*time.Second) {
		t.Fatal("sleep needed SIGKILL after SIGTERM")
	}
	if p.Alive() {
		t.Fatal("alive after SIGTERM")
	}
	p.Kill() // again, on an ended process: returns

}

func TestAgent_PauseResumeRestart(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "fake-warden")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a, err := NewAgent("n1", "127.0.0.1", filepath.Join(dir, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, up := a.Running(); up || a.Alive() {
		t.Fatal("running before the first start")
	}
	if err := a.Start(bin, dir, a.Flags("b:1", "logs")); err != nil {
		t.Fatal(err)
	}
	if inc, up := a.Running(); !up || inc != 1 {
		t.Fatalf("Running() = %d, %v after the first start", inc, up)
	}
	a.Pause()
	if _, up := a.Running(); up || !a.Alive() || !a.Paused() {
		t.Fatal("a paused agent must be alive, paused and not running")
	}
	a.Resume()
	a.Kill()
	if a.Alive() {
		t.Fatal("alive after Kill")
	}
	if err := a.Start(bin, dir, a.Flags("b:1", "logs")); err != nil {
		t.Fatal(err)
	}
	if inc, up := a.Running(); !up || inc != 2 {
		t.Fatalf("Running() = %d, %v after a restart", inc, up)
	}
	a.Pause()
	a.Stop(syscall.SIGTERM, 100*time.Millisecond) // a paused agent ends too
	if a.Alive() {
		t.Fatal("alive after Stop")
	}
}

func TestAgent_StopForcesOneThatIgnoresSIGTERM(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		script string
		forced bool
	}{
		{"#!/bin/sh\nexec sleep 60\n", false},
		// An ignored signal stays ignored across exec: SIGQUIT ends it.
		{"#!/bin/sh\ntrap '' TERM\nexec sleep 60\n", true},
	} {
		bin := filepath.Join(dir, "fake-warden")
		if err := os.WriteFile(bin, []byte(c.script), 0o755); err != nil {
			t.Fatal(err)
		}
		a, err := NewAgent("n1", "127.0.0.1", filepath.Join(dir, "n1"))
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Start(bin, dir, a.Flags("b:1", "logs")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // the trap is set
		if forced := a.Stop(syscall.SIGTERM, 300*time.Millisecond); forced != c.forced || a.Alive() {
			t.Fatalf("%q: Stop forced %v (want %v), alive %v", c.script, forced, c.forced, a.Alive())
		}
	}
}
