package e2e

import (
	"path/filepath"
	"testing"

	"github.com/wardenhq/warden/internal/benchresults"
)

// Results is bench/results.json (package benchresults).
type Results = benchresults.Results

// resultsPath is where benchmarks record their figures: $WARDEN_BENCH_RESULTS,
// or bench/results.json in the repository.
func resultsPath() string {
	if p, err := benchresults.Path(); err == nil {
		return p
	}
	return filepath.Join("..", "bench", "results.json")
}

// saveResult records the figures of benchmark name (with the time they were
// measured), keeping what other benchmarks of the run wrote.
func saveResult(tb testing.TB, name string, figures map[string]any) {
	tb.Helper()
	if err := benchresults.Save(name, figures); err != nil {
		tb.Fatal(err)
	}
}
