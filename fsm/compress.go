package fsm

import (
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// A batch's load figures are most of its bytes (the exact per-minute
// counts of clients, paths and agents: 9 bytes a line of a 40,000-line
// batch of varied traffic), and every byte goes through the leader to every
// voter and into each one's log. So a batch's figures past compressMin
// bytes go zstd-compressed, flagged flagAnalyticsZstd: zstd's default
// level, 3.6x smaller for about 0.1 µs a line on the owner (the fastest
// level: 2.8x for 0.08 µs), 0.02 µs for each replica to decompress.
//
// Detector deltas past compressMin go the same way, flagged
// flagDetectZstd: a batch's alerts (each with its sample lines) and a
// checkpoint's buckets were two thirds of the bytes left (10 of 15 a line
// in BenchmarkScaleOut), and compress about 4x.
const (
	flagAnalyticsZstd = 2
	flagDetectZstd    = 4
	compressMin       = 1 << 10
	// maxFigureBytes bounds what a batch's compressed figures or delta
	// may expand to: a batch is at most 4 MiB encoded, and figures compress 3x or so.
	maxFigureBytes = 64 << 20
)

var (
	zstdOnce sync.Once
	zstdEnc  *zstd.Encoder
	zstdDec  *zstd.Decoder
)

func zstdCodecs() (*zstd.Encoder, *zstd.Decoder) {
	zstdOnce.Do(func() {
		var err error
		// EncodeAll and DecodeAll are safe for concurrent use: one of
		// each serves every worker and the FSM.
		// A 1 MiB window (8 MiB at this level by default) and the
		// encoder's low-memory mode: figures are mostly well under a
		// MiB, and the default's history buffers held 16 MB per agent.
		if zstdEnc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(1<<20), zstd.WithLowerEncoderMem(true)); err != nil {
			panic(err)
		}
		if zstdDec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxFigureBytes)); err != nil {
			panic(err)
		}
	})
	return zstdEnc, zstdDec
}

// compressPart returns a batch's figures or detector delta compressed, or
// data itself and false when it is too small to gain.
func compressPart(data []byte) ([]byte, bool) {
	if len(data) < compressMin {
		return data, false
	}
	enc, _ := zstdCodecs()
	out := enc.EncodeAll(data, make([]byte, 0, len(data)/2))
	if len(out) >= len(data) {
		return data, false
	}
	return out, true
}

// decompressPart reverses compressPart, refusing what expands past
// maxFigureBytes.
func decompressPart(data []byte) ([]byte, error) {
	_, dec := zstdCodecs()
	out, err := dec.DecodeAll(data, nil)
	if err != nil {
		return nil, fmt.Errorf("compressed part does not decompress: %w", err)
	}
	return out, nil
}
