package clustertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Proc is one OS process the harness started, its output appended to a
// log file that is closed when the process ends.
type Proc struct {
	// Name names the process in logs: its log file is <dir>/<Name>.log.
	Name string
	// Args are the process's arguments, so that it can be started again as
	// itself.
	Args []string
	// Cmd is the running command (its Process for a pid, its ProcessState
	// once Done is closed).
	Cmd  *exec.Cmd
	done chan struct{}
}

// Start starts bin with args, stdout and stderr appended to <dir>/<name>.log.
func Start(bin, dir, name string, args ...string) (*Proc, error) {
	f, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	p, err := Spawn(name, cmd, f)
	if err != nil {
		return nil, err
	}
	p.Args = args
	return p, nil
}

// Spawn starts cmd, a command the caller prepared (a peer program with its
// own output file), and closes out, when not nil, once cmd has ended.
func Spawn(name string, cmd *exec.Cmd, out *os.File) (*Proc, error) {
	if err := cmd.Start(); err != nil {
		if out != nil {
			out.Close()
		}
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Args: cmd.Args[1:], Cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		if out != nil {
			out.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// Done is closed once the process has ended and its log is closed.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Alive reports whether the process still runs (a stopped one does).
func (p *Proc) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal sends sig; a process that has ended ignores it.
func (p *Proc) Signal(sig syscall.Signal) { _ = p.Cmd.Process.Signal(sig) }

// Stop sends sig and waits for the process to end, sending SIGKILL after
// grace; it reports whether SIGKILL was needed.
func (p *Proc) Stop(sig syscall.Signal, grace time.Duration) (killed bool) {
	p.Signal(sig)
	if p.Wait(grace) {
		return false
	}
	p.Kill()
	return true
}

// Wait waits at most d for the process to end and reports whether it did.
func (p *Proc) Wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// Kill sends SIGKILL and waits for the process to end. It may be called
// again, or on a process that has already ended.
func (p *Proc) Kill() {
	p.Signal(syscall.SIGKILL)
	<-p.done
}
