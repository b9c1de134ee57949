package node

import (
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardenhq/warden/backpressure"
)

// pacer is one worker's rate: the cap (--max-rate-per-partition) and,
// with --backpressure, the PID estimate from its committed batches; the
// effective rate is the lower of the two (0: none).
type pacer struct {
	n         *Node
	partition int32
	est       *backpressure.Estimator
	bits      atomic.Uint64 // the effective rate, a float64
	last      atomic.Int64  // the last batch's cut to commit, ns
}

// partitionRates holds the rates of this node's workers, for the API.
type partitionRates struct{ m sync.Map } // int32 -> float64

func (n *Node) newPacer(partition int32) *pacer {
	p := &pacer{n: n, partition: partition}
	if n.cfg.Backpressure {
		cfg := backpressure.DefaultConfig(n.cfg.BatchInterval)
		if n.cfg.BackpressureMinRate > 0 {
			cfg.MinRate = n.cfg.BackpressureMinRate
		}
		p.est = backpressure.New(cfg)
	}
	p.set(n.cfg.BackpressureInitialRate)
	return p
}

// rate is the records per second the worker may take now; 0 for no limit.
func (p *pacer) rate() float64 { return math.Float64frombits(p.bits.Load()) }

// cycle is how long the last batch took from its cut to its commit.
func (p *pacer) cycle() time.Duration { return time.Duration(p.last.Load()) }

// observe feeds a committed batch to the estimator: its records, the time
// it held the pipeline, the time it waited behind earlier batches, and its
// whole time from cut to commit.
func (p *pacer) observe(at time.Time, records int, processing, scheduling, cutToCommit time.Duration) {
	p.n.lastProcessing.Store(p.partition, cutToCommit)
	p.last.Store(int64(cutToCommit))
	if p.est == nil {
		return
	}
	if r, ok := p.est.Observe(at, records, processing, scheduling); ok {
		p.set(r)
	}
}

func (p *pacer) set(estimate float64) {
	r := estimate
	if c := p.n.cfg.MaxRatePerPartition; c > 0 && (r <= 0 || c < r) {
		r = c
	}
	p.bits.Store(math.Float64bits(r))
	p.n.rates.m.Store(p.partition, r)
	p.n.metrics.partitionRate.WithLabelValues(strconv.Itoa(int(p.partition))).Set(r)
}

// close forgets the worker's rate (another node, or a successor, owns it).
func (p *pacer) close() {
	p.n.rates.m.Delete(p.partition)
	p.n.metrics.partitionRate.DeleteLabelValues(strconv.Itoa(int(p.partition)))
}

// rateOf is the effective rate of this node's worker of partition, if any.
func (n *Node) rateOf(partition int32) float64 {
	if v, ok := n.rates.m.Load(partition); ok {
		return v.(float64)
	}
	return 0
}
