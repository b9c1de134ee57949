package shipper

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The headers of the records ship writes (DESIGN.md says what each is for).
// Every record carries HeaderShipID; records of followed files carry the
// rest, which is how a restarted ship learns from Kafka how far it got.
const (
	HeaderShipID = "warden-ship-id"
	// HeaderSeq numbers the lines of one ship id (across its restarts) in
	// the order they were produced.
	HeaderSeq = "warden-ship-seq"
	// HeaderAcked is the highest sequence number below which every line was
	// acknowledged (or is known to be in the topic) when this one was sent.
	HeaderAcked = "warden-ship-acked"
	// HeaderFile is the Identity of the file the line was read from.
	HeaderFile = "warden-ship-file"
	// HeaderOffset and HeaderNext are the byte offsets of the line's start
	// and of what follows it (after its newline) in that file.
	HeaderOffset = "warden-ship-offset"
	HeaderNext   = "warden-ship-next"
	// HeaderPath is the file's path when the line was read (for people).
	HeaderPath = "warden-ship-path"
	// HeaderFiles, on some records, lists every followed file with the
	// offset below which all of its lines were acknowledged (its watermark).
	HeaderFiles = "warden-ship-files"
	// HeaderFloors, with HeaderFiles, gives per partition an offset below
	// which no record of this ship can be above HeaderAcked.
	HeaderFloors = "warden-ship-floors"
	// HeaderSyslogHost and HeaderSyslogApp carry what a syslog message's
	// header said (its payload, the log line, is the record's value).
	HeaderSyslogHost = "warden-syslog-host"
	HeaderSyslogApp  = "warden-syslog-app"
)

// fileMark is a file and its watermark, as HeaderFiles lists them.
type fileMark struct {
	ID Identity
	W  int64
}

func encodeMarks(ms []fileMark) string {
	var b strings.Builder
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(m.ID.String())
		b.WriteByte('@')
		b.WriteString(strconv.FormatInt(m.W, 10))
	}
	return b.String()
}

func decodeMarks(s string) ([]fileMark, error) {
	var out []fileMark
	for _, f := range strings.Fields(s) {
		id, w, ok := strings.Cut(f, "@")
		if !ok {
			return nil, fmt.Errorf("%s: %q has no @", HeaderFiles, f)
		}
		m := fileMark{}
		var err error
		if m.ID, err = ParseIdentity(id); err != nil {
			return nil, err
		}
		if m.W, err = strconv.ParseInt(w, 10, 64); err != nil || m.W < 0 {
			return nil, fmt.Errorf("%s: bad watermark in %q", HeaderFiles, f)
		}
		out = append(out, m)
	}
	return out, nil
}

func encodeFloors(fl map[int32]int64) string {
	ps := make([]int32, 0, len(fl))
	for p := range fl {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d:%d", p, fl[p])
	}
	return b.String()
}

func decodeFloors(s string) (map[int32]int64, error) {
	out := map[int32]int64{}
	for _, f := range strings.Fields(s) {
		ps, os, ok := strings.Cut(f, ":")
		p, err1 := strconv.ParseInt(ps, 10, 32)
		o, err2 := strconv.ParseInt(os, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s: bad entry %q", HeaderFloors, f)
		}
		out[int32(p)] = o
	}
	return out, nil
}

// shipped is what the headers of one record of a followed file say.
type shipped struct {
	Partition int32
	Offset    int64 // the record's offset in its partition
	Seq       uint64
	Acked     uint64
	File      Identity
	Start     int64
	Next      int64
	// HasMarks is set on the records that list the files (HeaderFiles).
	HasMarks bool
	Marks    []fileMark
	Floors   map[int32]int64
}

// parseShipped reads the headers of r. ok is false for records that are
// not lines of a file followed by ship id (other writers, other ship
// ids, stdin and syslog records); err is set for records of ours whose
// headers do not read.
func parseShipped(r *kgo.Record, id string) (s shipped, ok bool, err error) {
	var have struct{ id, seq bool }
	s.Partition, s.Offset = r.Partition, r.Offset
	for _, h := range r.Headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderShipID:
			have.id = v == id
		case HeaderSeq:
			s.Seq, err = strconv.ParseUint(v, 10, 64)
			have.seq = err == nil
		case HeaderAcked:
			s.Acked, err = strconv.ParseUint(v, 10, 64)
		case HeaderFile:
			s.File, err = ParseIdentity(v)
		case HeaderOffset:
			s.Start, err = strconv.ParseInt(v, 10, 64)
		case HeaderNext:
			s.Next, err = strconv.ParseInt(v, 10, 64)
		case HeaderFiles:
			s.HasMarks = true
			s.Marks, err = decodeMarks(v)
		case HeaderFloors:
			s.Floors, err = decodeFloors(v)
		}
		if err != nil {
			break
		}
	}
	if !have.id || (!have.seq && err == nil) {
		return s, false, nil
	}
	if err != nil {
		return s, true, fmt.Errorf("record %d/%d of ship id %s: %w", r.Partition, r.Offset, id, err)
	}
	if s.Next <= s.Start || s.Acked >= s.Seq {
		return s, true, fmt.Errorf("record %d/%d of ship id %s: inconsistent headers (offset %d, next %d, seq %d, acked %d)",
			r.Partition, r.Offset, id, s.Start, s.Next, s.Seq, s.Acked)
	}
	return s, true, nil
}
