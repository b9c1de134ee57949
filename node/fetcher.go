package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/pipeline"
)

// fetcher is a node's one Kafka consumer of a topic, shared by the workers
// that read it (the first stages the input topic, the second stages the
// repartition topic): each worker subscribes to its partition from the
// FSM's committed position and takes the records the fetcher hands it.
//
// One client per worker fetched and kept the metadata of every partition
// of the topic, per worker: with a topic of 1,000 partitions, a rebalance's
// hundreds of new workers cost hundreds of full metadata requests, and a
// thousand clients long-polled the broker apart. One client per node
// fetches the metadata once and all of the node's partitions in one
// request per broker.
//
// A subscription's records come only from its own position: the one
// goroutine that polls the client also applies the subscriptions' changes,
// between polls. A closed subscription's partition is removed from the
// client (franz-go drops what it had buffered and invalidates the fetches
// in flight for it) before a successor's is added at its own offset; what
// a poll returned before that is routed by the subscriptions of that poll,
// so a successor never sees a record of its predecessor's position.
type fetcher struct {
	n     *Node
	topic string
	opts  []kgo.Opt

	mu      sync.Mutex
	cl      *kgo.Client
	changes []fetchChange
	wake    chan struct{}
	cancel  context.CancelFunc // the poll in progress, if any

	subs map[int32]*subscription // as the client consumes them: the loop's own

	// Past pauseAt records waiting, the fetcher stops fetching a
	// partition until its worker has taken them down to resumeAt: a slow
	// worker holds its own records, not the node's memory.
	pauseAt, resumeAt int
}

type fetchChange struct {
	sub *subscription
	add bool
}

// subscription is one worker's share of the fetcher: its partition's
// records from its offset on, and the errors met fetching them.
type subscription struct {
	f         *fetcher
	partition int32
	from      int64

	mu     sync.Mutex
	recs   []*kgo.Record
	errs   []error
	ready  chan struct{} // cap 1: records or errors arrived
	paused bool
	closed bool
}

func newFetcher(n *Node, topic string, opts []kgo.Opt) *fetcher {
	return &fetcher{n: n, topic: topic, opts: opts, wake: make(chan struct{}, 1), subs: map[int32]*subscription{},
		pauseAt: 50_000, resumeAt: 10_000}
}

// subscribe starts reading partition from offset from.
func (f *fetcher) subscribe(partition int32, from int64) (*subscription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cl == nil {
		// A direct consumer of the topic with no partition yet: they
		// are added and removed as workers come and go.
		opts := append([]kgo.Opt{kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{f.topic: {}})}, f.opts...)
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			return nil, err
		}
		f.cl = cl
		f.n.goRun(f.run)
	}
	s := &subscription{f: f, partition: partition, from: from, ready: make(chan struct{}, 1)}
	f.changes = append(f.changes, fetchChange{sub: s, add: true})
	f.poke()
	return s, nil
}

// poke makes the loop apply the changes: it ends the poll in progress.
// The caller holds f.mu.
func (f *fetcher) poke() {
	if f.cancel != nil {
		f.cancel()
	}
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// close ends s: its partition leaves the client before any successor's
// comes in.
func (s *subscription) close() {
	s.mu.Lock()
	s.closed = true
	clear(s.recs)
	s.recs, s.errs = nil, nil
	s.mu.Unlock()
	f := s.f
	f.mu.Lock()
	f.changes = append(f.changes, fetchChange{sub: s})
	f.poke()
	f.mu.Unlock()
}

// run polls the client and routes records to subscriptions until the node
// stops.
func (f *fetcher) run() {
	defer func() {
		f.mu.Lock()
		if f.cl != nil {
			// Nothing left to consume before the close: franz-go's
			// Close kills its fetch sessions while a metadata update
			// may still start a fetch for a direct consumer's partitions
			// (a race on the session, seen under the race detector).
			parts := make([]int32, 0, len(f.subs))
			for p := range f.subs {
				parts = append(parts, p)
			}
			f.cl.RemoveConsumePartitions(map[string][]int32{f.topic: parts})
			f.cl.Close()
		}
		f.mu.Unlock()
	}()
	for f.n.ctx.Err() == nil {
		f.apply()
		if len(f.subs) == 0 {
			select {
			case <-f.n.ctx.Done():
				return
			case <-f.wake:
			}
			continue
		}
		ctx, cancel := context.WithCancel(f.n.ctx)
		f.mu.Lock()
		if len(f.changes) > 0 {
			f.mu.Unlock()
			cancel()
			continue
		}
		f.cancel = cancel
		cl := f.cl
		f.mu.Unlock()
		fs := cl.PollRecords(ctx, f.pauseAt)
		f.mu.Lock()
		f.cancel = nil
		f.mu.Unlock()
		cancel()
		f.route(fs)
	}
}

// apply makes the client consume what the subscriptions ask, in the order
// asked: a partition removed, then added again at another offset, starts
// afresh there.
func (f *fetcher) apply() {
	f.mu.Lock()
	changes := f.changes
	f.changes = nil
	cl := f.cl
	f.mu.Unlock()
	for _, c := range changes {
		p := c.sub.partition
		if !c.add {
			if f.subs[p] == c.sub {
				delete(f.subs, p)
				cl.RemoveConsumePartitions(map[string][]int32{f.topic: {p}})
				cl.ResumeFetchPartitions(map[string][]int32{f.topic: {p}})
			}
			continue
		}
		if old := f.subs[p]; old != nil {
			// A successor asked before its predecessor closed: the
			// predecessor's position goes first.
			cl.RemoveConsumePartitions(map[string][]int32{f.topic: {p}})
			cl.ResumeFetchPartitions(map[string][]int32{f.topic: {p}})
			old.fail(errors.New("the partition was taken over by a newer reader"))
		}
		f.subs[p] = c.sub
		cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{f.topic: {p: kgo.NewOffset().At(c.sub.from)}})
	}
}

// route hands a poll's records and errors to the subscriptions that asked
// for them.
func (f *fetcher) route(fs kgo.Fetches) {
	fs.EachPartition(func(ftp kgo.FetchTopicPartition) {
		s := f.subs[ftp.Partition]
		if s == nil || ftp.Topic != f.topic {
			return
		}
		if err := ftp.Err; err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			s.fail(err)
		}
		if len(ftp.Records) > 0 {
			s.push(ftp.Records)
		}
	})
}

func (s *subscription) fail(err error) {
	s.mu.Lock()
	if !s.closed {
		s.errs = append(s.errs, err)
	}
	s.mu.Unlock()
	s.signal()
}

func (s *subscription) push(recs []*kgo.Record) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	for _, r := range recs {
		if r.Offset >= s.from {
			s.recs = append(s.recs, r)
		}
	}
	// The flag and the client's pause change together, under s.mu: a
	// resume by the reader between them would leave the partition
	// paused with nothing waiting, for good.
	if len(s.recs) >= s.f.pauseAt && !s.paused {
		s.paused = true
		s.f.cl.PauseFetchPartitions(map[string][]int32{s.f.topic: {s.partition}})
	}
	s.mu.Unlock()
	s.signal()
}

func (s *subscription) signal() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// poll appends to dst up to max of s's records, waiting for some until
// ctx ends, and returns the errors met since the last poll.
func (s *subscription) poll(ctx context.Context, dst []*kgo.Record, max int) ([]*kgo.Record, []error) {
	for {
		s.mu.Lock()
		if len(s.recs) > 0 || len(s.errs) > 0 {
			n := min(max, len(s.recs))
			dst = append(dst, s.recs[:n]...)
			// The rest moves to the front, so that the slice keeps its
			// room for the next pushes instead of growing again; the
			// places left behind are cleared: the worker holds those
			// records now, and nothing here may keep their fetch.
			rest := copy(s.recs, s.recs[n:])
			clear(s.recs[rest:])
			s.recs = s.recs[:rest]
			errs := s.errs
			s.errs = nil
			if s.paused && len(s.recs) <= s.f.resumeAt { // under s.mu, as push pauses
				s.paused = false
				s.f.cl.ResumeFetchPartitions(map[string][]int32{s.f.topic: {s.partition}})
			}
			s.mu.Unlock()
			return dst, errs
		}
		s.mu.Unlock()
		select { // ready holds a signal until taken: none is lost
		case <-ctx.Done():
			return dst, nil
		case <-s.ready:
		}
	}
}

// inputFetcher is the node's fetcher of the input topic, made at its
// first use.
func (n *Node) inputFetcher() *fetcher {
	n.fetchOnce.Do(func() {
		n.fetch = newFetcher(n, n.cfg.Topic, n.workerClientOpts(
			kgo.FetchMaxWait(n.cfg.BatchInterval),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			// Never jump silently: an offset out of range (records
			// deleted by retention, a recreated topic) stops the worker,
			// and its successor records the loss or the node reports the
			// topic.
			kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		))
	})
	return n.fetch
}

// repartFetcher is the node's fetcher of the repartition topic, shared by
// its second stages, made at its first use.
func (n *Node) repartFetcher() *fetcher {
	n.repartFetchOnce.Do(func() {
		n.repartFetch = newFetcher(n, n.repartTopic(), n.workerClientOpts(
			kgo.FetchMaxWait(n.cfg.BatchInterval),
			// Records deleted before the second stage read them are a
			// loss it records (skipRepartLoss), never a silent jump.
			kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		))
		// Its records are packs of up to pipeline.MaxPackLines lines:
		// the same bound in lines as the input's.
		n.repartFetch.pauseAt /= pipeline.MaxPackLines
		n.repartFetch.resumeAt /= pipeline.MaxPackLines
	})
	return n.repartFetch
}

// workerClientOpts are the options of the workers' clients: opts, and
// after a broker restart a quick return (short, capped backoff and fresh
// metadata), then the node's own Kafka options.
func (n *Node) workerClientOpts(opts ...kgo.Opt) []kgo.Opt {
	opts = append([]kgo.Opt{kgo.SeedBrokers(n.cfg.Brokers...),
		kgo.RetryBackoffFn(func(tries int) time.Duration {
			return min(100*time.Millisecond<<min(tries, 4), time.Second)
		}),
		kgo.MetadataMinAge(250 * time.Millisecond),
	}, opts...)
	return append(opts, n.cfg.KafkaOpts...)
}

// ownProducer is one first-stage worker's producer (newWorkerProducer),
// made when the worker first has something to send: most workers never
// send a dead letter, and a node with many partitions would otherwise hold
// an idle client for each.
type ownProducer struct {
	n  *Node
	cl *kgo.Client
}

// client returns the producer, made at the first call.
func (p *ownProducer) client() (*kgo.Client, error) {
	if p.cl == nil {
		cl, err := p.n.newWorkerProducer()
		if err != nil {
			return nil, fmt.Errorf("kafka client: %w", err)
		}
		p.cl = cl
	}
	return p.cl, nil
}

func (p *ownProducer) close() {
	if p.cl != nil {
		p.cl.Close()
	}
}

// produceRequestBytes bounds a first-stage worker's produce requests
// (newWorkerProducer). It is above franz-go's largest record batch (1 MB),
// as franz-go requires.
const produceRequestBytes = 2 << 20

// newWorkerProducer is a client for one first-stage worker to produce
// with (its forwarded lines, its dead letters), closed when the worker
// ends. Each worker has its own: franz-go fails a partition's buffered
// records together when the first one's context ends or it times out, so
// workers sharing a client would fail one another's records, and let
// through a stopped worker's records queued behind another's. A source's
// lines would then reach a repartition partition with a hole in them,
// which its successor's forwarding, landing after, cannot fill: the second
// stage drops a line below one it already holds as a repeat
// (pipeline/DESIGN.md, "What the first stage guarantees").
func (n *Node) newWorkerProducer() (*kgo.Client, error) {
	return kgo.NewClient(n.workerClientOpts(
		// Dead letters must not hold a partition up (sendDeadLetters).
		kgo.RecordDeliveryTimeout(deadLetterTimeout),
		// Forwarded lines go to the partition pipeline.Target picks,
		// the same on every node; dead letters to partition 0.
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProduceRequestTimeout(deadLetterTimeout),
		// A flush's records go in produce requests of at most
		// produceRequestBytes: franz-go builds each request in a buffer
		// from a pool the collector empties between a worker's flushes,
		// grown by doubling from 1 KiB, so one request of the whole
		// flush (tens of MiB) was grown and copied every time; several
		// smaller ones reuse the first one's buffer.
		kgo.BrokerMaxWriteBytes(produceRequestBytes),
	)...)
}
