// Package benchresults reads and writes bench/results.json, where the
// benchmarks of `make bench` record their figures for bench/table.go to
// print. Benchmarks in any package write through it, so that one file holds
// one run whichever packages the figures come from.
package benchresults

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// Results is bench/results.json: one entry per benchmark, each a set of
// named figures, written by the benchmarks of `make bench` as they finish.
type Results struct {
	Machine    Machine                   `json:"machine"`
	Benchmarks map[string]map[string]any `json:"benchmarks"`
}

// Machine says where the figures were measured.
type Machine struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
}

// Path is where benchmarks record their figures: $WARDEN_BENCH_RESULTS, or
// bench/results.json at the root of the module go test runs in (found by
// walking up from the working directory, a package's directory, to go.mod).
func Path() (string, error) {
	if p := os.Getenv("WARDEN_BENCH_RESULTS"); p != "" {
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("bench results: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "bench", "results.json"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("bench results: no go.mod above the working directory; set WARDEN_BENCH_RESULTS")
		}
		dir = parent
	}
}

// Save records the figures of benchmark name, with the time they were
// measured, keeping what other benchmarks of the run wrote.
func Save(name string, figures map[string]any) error {
	path, err := Path()
	if err != nil {
		return err
	}
	var r Results
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &r)
	}
	if r.Benchmarks == nil {
		r.Benchmarks = map[string]map[string]any{}
	}
	r.Machine = Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	figures["measured_at"] = time.Now().UTC().Format(time.RFC3339)
	r.Benchmarks[name] = figures
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("bench results: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("bench results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench results: %w", err)
	}
	return nil
}
