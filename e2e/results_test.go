package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// resultsPath is where benchmarks record their figures: $WARDEN_BENCH_RESULTS,
// or bench/results.json in the repository.
func resultsPath() string {
	if p := os.Getenv("WARDEN_BENCH_RESULTS"); p != "" {
		return p
	}
	return filepath.Join("..", "bench", "results.json")
}

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

// saveResult records the figures of benchmark name (with the time they were
// measured), keeping what other benchmarks of the run wrote.
func saveResult(tb testing.TB, name string, figures map[string]any) {
	tb.Helper()
	path := resultsPath()
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
		tb.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		tb.Fatal(err)
	}
}
