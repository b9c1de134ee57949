package chaos

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/wardenhq/warden/internal/clustertest"
)

// pstate is one partition as one node last reported it.
type pstate struct {
	owner     string
	epoch     uint64
	committed int64
	at        time.Time
}

// watcher polls every live node's /v1/partitions during the run: it keeps
// the latest view of each node and checks that no node's committed offset
// ever goes back within one run of its process.
type watcher struct {
	c          *cluster
	mu         sync.Mutex
	views      map[string]map[int32]pstate
	last       map[string]map[int32]int64 // per node incarnation
	incarn     map[string]int
	violations []string
	firstSum   int64
	lastSum    int64
	cancel     context.CancelFunc
	done       chan struct{}
	stopOnce   sync.Once
}

func newWatcher(c *cluster) *watcher {
	return &watcher{c: c, views: map[string]map[int32]pstate{}, last: map[string]map[int32]int64{}, incarn: map[string]int{},
		firstSum: -1, done: make(chan struct{})}
}

// start polls until stop.
func (w *watcher) start(ctx context.Context) {
	ctx, w.cancel = context.WithCancel(ctx)
	go w.loop(ctx)
}

func (w *watcher) loop(ctx context.Context) {
	defer close(w.done)
	for ctx.Err() == nil {
		var wg sync.WaitGroup
		for _, a := range w.c.Agents() {
			inc, up := a.Running()
			if !up {
				continue
			}
			wg.Add(1)
			go func(a *clustertest.Agent, inc int) {
				defer wg.Done()
				var parts partitionsDoc
				if get(a.HTTP, "/v1/partitions", &parts) != nil {
					return
				}
				w.observe(a.ID, inc, parts)
			}(a, inc)
		}
		wg.Wait()
		select {
		case <-ctx.Done():
		case <-time.After(150 * time.Millisecond):
		}
	}
}

func (w *watcher) observe(id string, inc int, parts partitionsDoc) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	if w.incarn[id] != inc {
		w.incarn[id], w.last[id] = inc, map[int32]int64{}
	}
	v := map[int32]pstate{}
	var sum int64
	for _, p := range parts {
		v[p.Partition] = pstate{owner: p.Owner, epoch: p.Epoch, committed: p.Committed, at: now}
		if prev, ok := w.last[id][p.Partition]; ok && p.Committed < prev {
			w.violations = append(w.violations, fmt.Sprintf("%s: partition %d committed offset went back from %d to %d", id, p.Partition, prev, p.Committed))
		}
		w.last[id][p.Partition] = max(w.last[id][p.Partition], p.Committed)
		sum += p.Committed
	}
	w.views[id] = v
	if w.firstSum < 0 {
		w.firstSum = sum
	}
	w.lastSum = max(w.lastSum, sum)
}

// forget drops a node's view (it was killed).
func (w *watcher) forget(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.views, id)
}

// merged is, per partition, the furthest committed offset any node reports
// and the owner the furthest-ahead node names.
func (w *watcher) merged() map[int32]pstate { return w.mergedSince(time.Time{}) }

func (w *watcher) mergedSince(t time.Time) map[int32]pstate {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[int32]pstate{}
	for _, v := range w.views {
		for p, s := range v {
			if s.at.Before(t) {
				continue
			}
			if cur, ok := out[p]; !ok || s.committed > cur.committed {
				out[p] = s
			}
		}
	}
	return out
}

func (w *watcher) committedDuring() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.firstSum < 0 {
		return 0
	}
	return w.lastSum - w.firstSum
}

func (w *watcher) stop() {
	w.stopOnce.Do(func() {
		if w.cancel != nil {
			w.cancel()
			<-w.done
		}
	})
}

func (w *watcher) checks() []Check {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := Check{Name: "offsets never went back (as each node served them)", OK: len(w.violations) == 0, Detail: "no decrease seen in any node's /v1/partitions"}
	if !c.OK {
		c.Detail = fmt.Sprintf("%d decreases, first: %s", len(w.violations), w.violations[0])
	}
	return []Check{c}
}
