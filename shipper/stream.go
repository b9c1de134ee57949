package shipper

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ShipLines reads lines from r until EOF (or ctx is done, or r fails) and
// hands each non-blank one to send as a record keyed by its client, with
// the ship id in a header. read, if not nil, is told the bytes read so far.
// It is the one-shot path: standard input (an Apache piped log) and files
// given without --follow. A line longer than 1 MiB is an error.
func ShipLines(ctx context.Context, r io.Reader, keyer *Keyer, shipID string, send func(*kgo.Record), read func(int64)) (lines int64, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var n int64
	for sc.Scan() {
		if ctx.Err() != nil {
			return lines, ctx.Err()
		}
		line := sc.Bytes()
		n += int64(len(line)) + 1
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		val := append([]byte(nil), line...)
		send(&kgo.Record{Key: keyer.Key(val), Value: val, Headers: []kgo.RecordHeader{{Key: HeaderShipID, Value: []byte(shipID)}}})
		lines++
		if read != nil {
			read(n)
		}
	}
	if err := sc.Err(); err != nil {
		return lines, fmt.Errorf("read: %w", err)
	}
	return lines, nil
}
