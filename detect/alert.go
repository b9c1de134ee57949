package detect

import (
	"encoding/binary"
	"encoding/hex"
	"sort"
	"time"

	"github.com/cespare/xxhash/v2"
)

// An alert is what a bucket raises when it overflows. Its id depends only
// on the records that raised it, so the cluster and `warden analyze` give
// the same ids.

// Alert is one scenario overflowing for one source.
type Alert struct {
	ID        string   `json:"id"`
	Seq       uint64   `json:"seq"`
	Scenario  string   `json:"scenario"`
	CrowdSec  string   `json:"crowdsec_scenario"`
	SourceIP  string   `json:"source_ip"`
	Events    int      `json:"events"`
	FirstSeen string   `json:"first_seen"`
	LastSeen  string   `json:"last_seen"`
	Partition int32    `json:"partition"`
	Offsets   [2]int64 `json:"offsets"`
	Samples   []string `json:"samples"`
	// Time is the event time of the request that raised the alert.
	Time int64 `json:"time_unix_nano"`
	// Scope is "range" for an alert on a network (SourceIP is then its
	// CIDR), empty for one address. It follows from the source, so the
	// binary form does not carry it.
	Scope string `json:"scope,omitempty"`
	// Simulated is set by the Book: the scenario or the whole book
	// simulates, and the alert's decision reaches no bouncer.
	Simulated bool `json:"simulated,omitempty"`
}

// alertScope is an alert's Scope field: "range" for a network, empty for
// an address (the field's zero value, so older alerts read the same).
func alertScope(source string) string {
	if scopeOf(source) == ScopeRange {
		return ScopeRange
	}
	return ""
}

func rfc3339(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339) }

// alertID is a function of what raised the alert, not of where it was
// processed: the same records give the same id, in the cluster and offline.
func alertID(scenario, ip string, t int64, line []byte) string {
	h := xxhash.New()
	_, _ = h.WriteString(scenario)
	_, _ = h.Write([]byte{0})
	_, _ = h.WriteString(ip)
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(t))
	_, _ = h.Write(ts[:])
	_, _ = h.Write(line)
	var out [8]byte
	binary.BigEndian.PutUint64(out[:], h.Sum64())
	return hex.EncodeToString(out[:])
}

// SortAlerts orders alerts by time, then id: a stable order for documents.
func SortAlerts(a []Alert) {
	sort.SliceStable(a, func(i, j int) bool {
		if a[i].Time != a[j].Time {
			return a[i].Time < a[j].Time
		}
		return a[i].ID < a[j].ID
	})
}
