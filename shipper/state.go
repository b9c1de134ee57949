package shipper

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// hint is the optional local state file: not a position (Kafka holds
// that), only a bound on how far back the read-back must go. It names,
// per partition, an offset at or below which no record of this ship id can
// matter to a later start: the floors of a marks record Kafka acknowledged
// (DESIGN.md, "State file").
type hint struct {
	ShipID  string          `json:"ship_id"`
	Topic   string          `json:"topic"`
	TopicID string          `json:"topic_id"`
	Floors  map[int32]int64 `json:"floors"`
}

// loadHint reads the state file; a missing one is no hint.
func loadHint(path string) (*hint, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state file: %w", err)
	}
	var h hint
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	return &h, nil
}

// saveHint writes the state file atomically.
func saveHint(path string, h *hint) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ship-state-*")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("state file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("state file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("state file: %w", err)
	}
	return nil
}
