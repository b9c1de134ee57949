package clustertest

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/fsm"
	"github.com/wardenhq/warden/workload"
)

// EndOffsets lists topic's end offset per partition. kopts are more client
// options (TLS, SASL).
func EndOffsets(ctx context.Context, broker, topic string, kopts ...kgo.Opt) (map[int32]int64, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(broker)}, kopts...)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	if err := ends.Error(); err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out, nil
}

// ReadTopic reads every record of topic below ends, per partition in offset
// order, within two minutes. With committed it reads as a read-committed
// consumer, which may end short of the end offsets (transaction markers,
// aborted records): it stops after two empty polls, and a short read is no
// error.
func ReadTopic(ctx context.Context, broker, topic string, ends map[int32]int64, committed bool, kopts ...kgo.Opt) (map[int32][]*kgo.Record, error) {
	out := map[int32][]*kgo.Record{}
	var want, got int64
	for _, e := range ends {
		want += e
	}
	if want == 0 {
		return out, nil
	}
	opts := append([]kgo.Opt{kgo.SeedBrokers(broker), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, kopts...)
	if committed {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	deadline := time.Now().Add(2 * time.Minute)
	idle := 0
	for time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < ends[r.Partition] {
				out[r.Partition] = append(out[r.Partition], r)
				got++
				n++
			}
		})
		// Read-committed reads may end before the end offset (markers,
		// aborted records): stop after two empty polls.
		if got >= want || (committed && n == 0 && idle > 0) {
			break
		}
		if n == 0 {
			idle++
		}
	}
	if !committed && got < want {
		return out, fmt.Errorf("read %d of %d records of %s", got, want, topic)
	}
	return out, nil
}

// ReadAll reads every record topic holds now (ReadTopic to its current end
// offsets).
func ReadAll(ctx context.Context, broker, topic string, kopts ...kgo.Opt) (map[int32][]*kgo.Record, error) {
	ends, err := EndOffsets(ctx, broker, topic, kopts...)
	if err != nil {
		return nil, err
	}
	return ReadTopic(ctx, broker, topic, ends, false, kopts...)
}

// Producer sends generated access-log lines, keyed by the client's network
// as `warden ship` keys them, and keeps per partition the digest and end
// offset of what the broker acknowledged: the truth a cluster's replicas
// must match.
type Producer struct {
	cl  *kgo.Client
	gen *workload.Generator

	mu      sync.Mutex
	digests map[int32]fsm.Digest
	ends    map[int32]int64
	err     error
}

// NewProducer connects a producer of gen's lines to topic. kopts are more
// client options.
func NewProducer(broker, topic string, gen *workload.Generator, kopts ...kgo.Opt) (*Producer, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(broker), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(2 * time.Millisecond)}, kopts...)...)
	if err != nil {
		return nil, err
	}
	return &Producer{cl: cl, gen: gen, digests: map[int32]fsm.Digest{}, ends: map[int32]int64{}}, nil
}

// Close closes the producer's client.
func (p *Producer) Close() { p.cl.Close() }

// Produce sends n lines and waits for their acknowledgements; it returns
// the error of a record that failed, if any.
func (p *Producer) Produce(n int) error {
	var wg sync.WaitGroup
	var failed error
	for i := 0; i < n; i++ {
		line, ip := p.gen.Line()
		wg.Add(1)
		p.cl.Produce(context.Background(), &kgo.Record{Key: []byte(detect.PartitionKey(ip)), Value: []byte(line)}, func(r *kgo.Record, err error) {
			defer wg.Done()
			p.mu.Lock()
			defer p.mu.Unlock()
			if err != nil {
				p.err, failed = err, err
				return
			}
			p.add(r)
		})
	}
	wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return failed
}

// ProduceRaw sends one record as is (a line that does not parse, a key of
// the caller's choosing) and waits for its acknowledgement.
func (p *Producer) ProduceRaw(key, value string) error {
	r, err := p.cl.ProduceSync(context.Background(), &kgo.Record{Key: []byte(key), Value: []byte(value)}).First()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.err = err
		return err
	}
	p.add(r)
	return nil
}

// add counts an acknowledged record; p.mu is held.
func (p *Producer) add(r *kgo.Record) {
	d := p.digests[r.Partition]
	d.AddRecord(r.Partition, r.Offset, r.Value)
	p.digests[r.Partition] = d
	p.ends[r.Partition] = max(p.ends[r.Partition], r.Offset+1)
}

// Acked is what the broker acknowledged so far: per partition the digest
// of the records and the end offset, and the latest error of a record that
// failed (nil: none did). The maps are copies.
func (p *Producer) Acked() (digests map[int32]fsm.Digest, ends map[int32]int64, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.digests), maps.Clone(p.ends), p.err
}
