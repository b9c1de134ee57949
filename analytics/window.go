// Package analytics folds parsed access-log entries into per-minute load
// windows that merge deterministically: counters are sums, distinct client
// IPs a HyperLogLog (registers merge by max), response times a DDSketch
// (bucket counts add up), top lists exact counts. So the result of merging
// any partition of the records, in any order, is the same.
package analytics

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/axiomhq/hyperloglog"

	"github.com/wardenhq/warden/accesslog"
)

// WindowSeconds is the width of one window of event time.
const WindowSeconds = 60

// MaxKeyBytes bounds a counted key (a path, a user agent...): longer keys are
// cut at a character boundary, so one attacker cannot make a key of 64 KiB.
const MaxKeyBytes = 256

// latencyAccuracy is the DDSketch relative accuracy of the quantiles.
const latencyAccuracy = 0.01

// Window holds the figures of one minute of event time.
type Window struct {
	Start      int64  // Unix seconds, a multiple of WindowSeconds
	Requests   int64  //
	Bytes      int64  // response bytes
	Status     Counts // by status code ("200")
	Methods    Counts // GET, POST, ... OTHER for unknown, "-" for none
	Paths      Counts // request path without the query string
	NotFound   Counts // paths answered 404
	Clients    Counts // requests per client address
	UserAgents Counts
	Referrers  Counts
	// VHosts counts requests per virtual host (%v, %V, $host), VHostBytes
	// their response bytes and VHostClass their requests per status class,
	// keyed "2xx host". All three stay empty when the format logs no host.
	VHosts, VHostBytes, VHostClass Counts
	// Latency: requests with a logged duration, their maximum (µs), and a
	// sketch of their distribution in microseconds.
	LatencyCount int64
	LatencyMaxUs int64
	latency      *ddsketch.DDSketch
	// ips counts distinct clients; only windows held by a Store have it.
	// It holds the first ipsDone of Clients' keys (in insertion order) and
	// any sketch merged in: a merge leaves new clients to catchUp, which
	// runs when the sketch is read (see Store.sketchMu).
	ips     *hyperloglog.Sketch
	ipsDone int
	// keyBuf builds VHostClass keys without allocating.
	keyBuf []byte
	// touched is the Store's count of merges at the last one that
	// changed w (Store.expire drops the indexes of windows idle since).
	touched uint64
}

func newWindow(start int64) *Window { return &Window{Start: start} }

// reset empties w, keeping its counts' memory (Aggregate.Reset).
func (w *Window) reset() {
	for _, c := range w.allCounts() {
		c.reset()
	}
	*w = Window{Status: w.Status, Methods: w.Methods, Paths: w.Paths, NotFound: w.NotFound, Clients: w.Clients,
		UserAgents: w.UserAgents, Referrers: w.Referrers, VHosts: w.VHosts, VHostBytes: w.VHostBytes, VHostClass: w.VHostClass,
		keyBuf: w.keyBuf}
}

var knownMethods = map[string]string{}

func init() {
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
		"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH", "PURGE"} {
		knownMethods[m] = m
	}
}

// key cuts k to MaxKeyBytes at a character boundary; an empty key is "-".
func key(k []byte) []byte {
	if len(k) == 0 {
		return dashKey
	}
	if len(k) <= MaxKeyBytes {
		return k
	}
	n := MaxKeyBytes
	for n > 0 && !utf8.RuneStart(k[n]) {
		n--
	}
	return k[:n]
}

var dashKey = []byte("-")

func (w *Window) add(e *accesslog.Entry) {
	w.Requests++
	w.Bytes += e.Bytes
	w.Status.AddString(statusKey(e.Status), 1)
	if len(e.Method) == 0 {
		w.Methods.AddString("-", 1)
	} else if m, ok := knownMethods[string(e.Method)]; ok {
		w.Methods.AddString(m, 1)
	} else {
		w.Methods.AddString("OTHER", 1)
	}
	p := key(e.Path)
	w.Paths.Add(p, 1)
	if e.Status == 404 {
		w.NotFound.Add(p, 1)
	}
	w.Clients.Add(key(e.Client), 1)
	if len(e.UserAgent) > 0 {
		w.UserAgents.Add(key(e.UserAgent), 1)
	}
	if len(e.Referer) > 0 {
		w.Referrers.Add(key(e.Referer), 1)
	}
	if len(e.VHost) > 0 {
		h := key(e.VHost)
		w.VHosts.Add(h, 1)
		w.VHostBytes.Add(h, e.Bytes)
		w.keyBuf = append(append(append(w.keyBuf[:0], statusKey(e.Status)[0]), "xx "...), h...)
		w.VHostClass.Add(w.keyBuf, 1)
	}
	if e.Duration >= 0 {
		if w.latency == nil {
			w.latency = newSketch()
		}
		_ = w.latency.Add(float64(e.Duration))
		w.LatencyCount++
		w.LatencyMaxUs = max(w.LatencyMaxUs, e.Duration)
	}
}

var statusKeys [1000]string

func init() {
	for i := range statusKeys {
		statusKeys[i] = fmt.Sprintf("%03d", i)
	}
}

func statusKey(s int) string {
	if s >= 0 && s < len(statusKeys) {
		return statusKeys[s]
	}
	return "000"
}

func newSketch() *ddsketch.DDSketch {
	s, err := ddsketch.LogUnboundedDenseDDSketch(latencyAccuracy)
	if err != nil {
		panic(err) // a constant accuracy: cannot fail
	}
	return s
}

func newHLL() *hyperloglog.Sketch {
	// Dense registers only: the sparse form converts at thresholds that
	// depend on insertion order, and the estimate must not.
	return hyperloglog.NewNoSparse()
}

// merge adds o into w. When w carries a HyperLogLog, o's clients go into it
// at the next catchUp.
func (w *Window) merge(o *Window) error {
	w.Requests += o.Requests
	w.Bytes += o.Bytes
	w.Status.Merge(&o.Status)
	w.Methods.Merge(&o.Methods)
	w.Paths.Merge(&o.Paths)
	w.NotFound.Merge(&o.NotFound)
	w.Clients.Merge(&o.Clients)
	w.UserAgents.Merge(&o.UserAgents)
	w.Referrers.Merge(&o.Referrers)
	w.VHosts.Merge(&o.VHosts)
	w.VHostBytes.Merge(&o.VHostBytes)
	w.VHostClass.Merge(&o.VHostClass)
	if o.latency != nil {
		if w.latency == nil {
			w.latency = newSketch()
		}
		if err := w.latency.MergeWith(o.latency); err != nil {
			return fmt.Errorf("merge latency: %w", err)
		}
	}
	w.LatencyCount += o.LatencyCount
	w.LatencyMaxUs = max(w.LatencyMaxUs, o.LatencyMaxUs)
	if w.ips != nil && o.ips != nil {
		if err := w.ips.Merge(o.ips); err != nil {
			return fmt.Errorf("merge distinct clients: %w", err)
		}
	}
	return nil
}

// dropIndexes drops the indexes of w's counts (Counts.dropIndex).
func (w *Window) dropIndexes() {
	for _, c := range w.counts() {
		c.dropIndex()
	}
	w.VHosts.dropIndex()
	w.VHostBytes.dropIndex()
	w.VHostClass.dropIndex()
}

// track gives w a distinct-client sketch, if it has none, which its clients
// go into at the next catchUp.
func (w *Window) track() {
	if w.ips == nil {
		w.ips, w.ipsDone = newHLL(), 0
	}
}

// catchUp puts into w's sketch the clients counted since it last ran (all
// of them if w has no sketch yet). Every replica merges every batch, and a
// window's clients are exact, so the sketch is filled when it is read (a
// query's distinct count, a snapshot), not at each merge: dense registers
// each keep the maximum of what went in, so the sketch is the same whatever
// the order and grouping of its clients.
func (w *Window) catchUp() {
	w.track()
	for i := w.ipsDone; i < w.Clients.Len(); i++ {
		w.ips.Insert(w.Clients.key(i))
	}
	w.ipsDone = w.Clients.Len()
}

// wireWindow is a Window as JSON (Raft deltas and snapshots).
type wireWindow struct {
	Start        int64   `json:"t"`
	Requests     int64   `json:"n"`
	Bytes        int64   `json:"b"`
	Status       *Counts `json:"s"`
	Methods      *Counts `json:"m"`
	Paths        *Counts `json:"p"`
	NotFound     *Counts `json:"nf"`
	Clients      *Counts `json:"c"`
	UserAgents   *Counts `json:"ua"`
	Referrers    *Counts `json:"r"`
	VHosts       *Counts `json:"vh,omitempty"`
	VHostBytes   *Counts `json:"vb,omitempty"`
	VHostClass   *Counts `json:"vc,omitempty"`
	LatencyCount int64   `json:"lc,omitempty"`
	LatencyMaxUs int64   `json:"lm,omitempty"`
	Latency      []byte  `json:"l,omitempty"`
	IPs          []byte  `json:"h,omitempty"`
}

// MarshalJSON encodes the window with its sketches.
func (w *Window) MarshalJSON() ([]byte, error) {
	ww := wireWindow{Start: w.Start, Requests: w.Requests, Bytes: w.Bytes,
		Status: &w.Status, Methods: &w.Methods, Paths: &w.Paths, NotFound: &w.NotFound,
		Clients: &w.Clients, UserAgents: &w.UserAgents, Referrers: &w.Referrers,
		LatencyCount: w.LatencyCount, LatencyMaxUs: w.LatencyMaxUs}
	// Written only when the format logs a host, so snapshots of other
	// logs keep their size and read the same in earlier releases.
	if w.VHosts.Len() > 0 {
		ww.VHosts, ww.VHostBytes, ww.VHostClass = &w.VHosts, &w.VHostBytes, &w.VHostClass
	}
	if w.latency != nil {
		w.latency.Encode(&ww.Latency, false)
	}
	if w.ips != nil {
		b, err := w.ips.MarshalBinary()
		if err != nil {
			return nil, err
		}
		ww.IPs = b
	}
	return json.Marshal(ww)
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (w *Window) UnmarshalJSON(data []byte) error {
	*w = Window{}
	ww := wireWindow{Status: &w.Status, Methods: &w.Methods, Paths: &w.Paths, NotFound: &w.NotFound,
		Clients: &w.Clients, UserAgents: &w.UserAgents, Referrers: &w.Referrers,
		VHosts: &w.VHosts, VHostBytes: &w.VHostBytes, VHostClass: &w.VHostClass}
	if err := json.Unmarshal(data, &ww); err != nil {
		return err
	}
	w.Start, w.Requests, w.Bytes = ww.Start, ww.Requests, ww.Bytes
	w.LatencyCount, w.LatencyMaxUs = ww.LatencyCount, ww.LatencyMaxUs
	// Checked as the binary form's sketches are: a corrupt snapshot is an
	// error, not a panic or a huge allocation.
	if len(ww.Latency) > 0 {
		lat, err := decodeLatency(ww.Latency)
		if err != nil {
			return err
		}
		w.latency = newSketch()
		_ = w.latency.MergeWith(lat) // same mapping: cannot fail
	}
	if len(ww.IPs) > 0 {
		if err := checkHLL(ww.IPs); err != nil {
			return err
		}
		w.ips = newHLL()
		if err := w.ips.UnmarshalBinary(ww.IPs); err != nil {
			return fmt.Errorf("decode distinct clients: %w", err)
		}
		w.ipsDone = w.Clients.Len() // written with them
	}
	return nil
}
