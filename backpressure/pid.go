// Package backpressure estimates how many records per second a partition's
// worker can take, from how long its batches take, as Spark Streaming's
// PIDRateEstimator does (spark.streaming.backpressure.pid.*): a PID
// controller whose error is the difference between the rate it allowed and
// the rate the pipeline achieved, and whose integral term is the backlog
// the pipeline is carrying (its scheduling delay, in records).
package backpressure

import (
	"fmt"
	"math"
	"time"
)

// Config holds the controller's gains and bounds, with Spark's defaults.
type Config struct {
	// Proportional, Integral and Derivative weigh the current error, the
	// accumulated backlog and the error's change (Spark: 1.0, 0.2, 0.0).
	Proportional, Integral, Derivative float64
	// MinRate is the lowest rate the estimator answers (records/s; Spark:
	// 100): a slow spell never stops a partition.
	MinRate float64
	// BatchInterval is the worker's batch interval, which the backlog is
	// measured against.
	BatchInterval time.Duration
}

// DefaultConfig returns Spark's defaults for batch interval d.
func DefaultConfig(d time.Duration) Config {
	return Config{Proportional: 1.0, Integral: 0.2, Derivative: 0.0, MinRate: 100, BatchInterval: d}
}

// Validate refuses gains Spark refuses.
func (c Config) Validate() error {
	switch {
	case c.BatchInterval <= 0:
		return fmt.Errorf("backpressure: batch interval must be positive, got %s", c.BatchInterval)
	case c.Proportional < 0 || c.Integral < 0 || c.Derivative < 0:
		return fmt.Errorf("backpressure: gains must not be negative")
	case c.MinRate <= 0:
		return fmt.Errorf("backpressure: minimum rate must be positive, got %g", c.MinRate)
	}
	return nil
}

// Estimator is one partition's rate estimate. It is not safe for
// concurrent use: a worker owns it.
type Estimator struct {
	cfg       Config
	first     bool
	lastTime  time.Time
	lastRate  float64
	lastError float64
}

// New returns an estimator with no estimate yet.
func New(cfg Config) *Estimator { return &Estimator{cfg: cfg, first: true} }

// Observe feeds one completed batch: when it completed, how many records
// it held, how long it took from being cut to being committed (processing
// and commit), and how long it waited behind earlier batches before that
// (the scheduling delay). It returns the new rate, and false when there is
// none yet (the first batch, or a batch that says nothing).
func (e *Estimator) Observe(at time.Time, records int, processing, scheduling time.Duration) (float64, bool) {
	if !at.After(e.lastTime) || records <= 0 || processing <= 0 {
		return 0, false
	}
	since := at.Sub(e.lastTime).Seconds()
	rate := float64(records) / processing.Seconds() // what the pipeline achieved
	err := e.lastRate - rate
	backlog := scheduling.Seconds() * rate / e.cfg.BatchInterval.Seconds()
	dErr := (err - e.lastError) / since
	next := math.Max(e.lastRate-e.cfg.Proportional*err-e.cfg.Integral*backlog-e.cfg.Derivative*dErr, e.cfg.MinRate)
	e.lastTime = at
	if e.first {
		e.first = false
		e.lastRate, e.lastError = rate, 0
		return 0, false
	}
	e.lastRate, e.lastError = next, err
	return next, true
}

// Rate is the current estimate, 0 before the first one.
func (e *Estimator) Rate() float64 {
	if e.first {
		return 0
	}
	return e.lastRate
}
