package node

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/fsm"
)

// The bouncer API: CrowdSec's local API as its bouncers use it, on every
// node. Bouncers authenticate with one of the node's BouncerKeys in
// X-Api-Key; their routes are open to the HTTP guard.

// InstanceHeader names a bouncer instance explicitly (as does the
// `instance` query parameter), for bouncers that share a key, a user agent
// and an address.
const InstanceHeader = "X-Warden-Instance"

// liveParams are CrowdSec's query parameters of live mode (GET
// /v1/decisions); any of them makes the request a bouncer's.
var liveParams = []string{"ip", "range", "scope", "scopes", "value", "type", "contains", "origins",
	"scenarios_containing", "scenarios_not_containing", "simulated"}

// isBouncerQuery reports whether a request to /v1/decisions comes from a
// bouncer rather than from an operator or the dashboard.
func isBouncerQuery(r *http.Request) bool {
	if r.Header.Get("X-Api-Key") != "" {
		return true
	}
	q := r.URL.Query()
	for _, p := range liveParams {
		if q.Has(p) {
			return true
		}
	}
	return false
}

// bouncerKey checks X-Api-Key against the node's bouncer keys, answering
// 403 as CrowdSec does when it is missing or unknown.
func (n *Node) bouncerKey(w http.ResponseWriter, r *http.Request) (string, bool) {
	key := r.Header.Get("X-Api-Key")
	known := false
	for _, k := range n.cfg.BouncerKeys {
		known = subtle.ConstantTimeCompare([]byte(k), []byte(key)) == 1 || known
	}
	if key == "" || !known {
		writeJSON(w, http.StatusForbidden, map[string]string{"message": "access forbidden"})
		return "", false
	}
	return key, true
}

// bouncerInstance is who pulls: a bouncer is told apart by its API key,
// its User-Agent and its address (CrowdSec tells them apart by the name
// they were registered with; Warden's keys carry no name), or by an
// explicit instance name. The key enters the id only through a hash, so
// the replicated state never holds it.
type bouncerInstance struct {
	id, userAgent, addr, name string
}

// Bounds on what a node records of a bouncer (the id covers the whole
// values).
const maxInstanceField = 256

func identify(r *http.Request, key string) bouncerInstance {
	addr := r.RemoteAddr
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	name := r.Header.Get(InstanceHeader)
	if name == "" {
		name = r.URL.Query().Get("instance")
	}
	ua := r.UserAgent()
	h := sha256.New()
	for _, s := range []string{key, ua, addr, name} {
		h.Write([]byte(strconv.Itoa(len(s)) + ":" + s))
	}
	clip := func(s string) string {
		if len(s) > maxInstanceField {
			s = s[:maxInstanceField]
		}
		return strings.ToValidUTF8(s, "?")
	}
	return bouncerInstance{id: hex.EncodeToString(h.Sum(nil)[:16]), userAgent: clip(ua), addr: clip(addr), name: clip(name)}
}

// bouncerStreams serialises the pulls of one instance on this node (striped
// by instance id), so that its recorded answers follow one another.
type bouncerStreams struct {
	locks [64]sync.Mutex
}

func (s *bouncerStreams) lock(id string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(id))
	return &s.locks[h.Sum32()%uint32(len(s.locks))]
}

// decisionFilter reads CrowdSec's filter parameters; scopes default to
// defScopes when absent.
func decisionFilter(q url.Values, defScopes string) detect.DecisionFilter {
	scopes := defScopes
	for _, p := range []string{"scopes", "scope"} {
		if q.Has(p) {
			scopes = q.Get(p)
		}
	}
	return detect.DecisionFilter{
		Scopes:                 detect.ParseList(scopes),
		Origins:                detect.ParseList(q.Get("origins")),
		ScenariosContaining:    detect.ParseList(q.Get("scenarios_containing")),
		ScenariosNotContaining: detect.ParseList(q.Get("scenarios_not_containing")),
	}
}

// handleStream serves GET /v1/decisions/stream as CrowdSec's local API
// does, with the position of each bouncer instance in the replicated state:
// startup=true sends every decision in force (and every tombstone kept);
// later pulls send every value whose decisions changed since the instance's
// position (fsm.Bouncer.Base), in its state now. The answer is recorded
// through Raft once it is written in full, so the next pull, to any node,
// starts from it; an answer that may have been lost is sent again. HEAD
// answers 200 and records nothing.
func (n *Node) handleStream(w http.ResponseWriter, r *http.Request) {
	key, ok := n.bouncerKey(w, r)
	if !ok {
		return
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	q := r.URL.Query()
	flt := decisionFilter(q, "ip,range")
	startup := q.Get("startup") == "true"
	inst := identify(r, key)
	mu := n.streams.lock(inst.id)
	mu.Lock()
	defer mu.Unlock()

	now := time.Now()
	plan := n.fsm.PlanPull(inst.id, startup, flt, now)
	body, err := json.Marshal(streamAnswer{New: toStreamList(plan.Changes.New, now), Deleted: toStreamList(plan.Changes.Deleted, now)})
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"message": err.Error()})
		return
	}
	// A length lets the client's HTTP layer see the end of the answer with
	// its last byte.
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(body)
	if err == nil {
		err = http.NewResponseController(w).Flush()
	}
	if err == nil {
		err = r.Context().Err() // the client went away
	}
	lg := n.log.With("subsystem", "http", "bouncer", inst.userAgent, "addr", inst.addr)
	if err != nil {
		lg.Debug("bouncer answer not written in full; it is sent again", "err", err)
		return
	}
	if !plan.Record {
		return
	}
	at := plan.Changes.At
	ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
	defer cancel()
	res, err := n.propose(ctx, fsm.Command{Kind: fsm.KindBouncerPull, Bouncer: &fsm.BouncerPull{
		Instance: inst.id, At: at, Now: now.UnixNano(), UserAgent: inst.userAgent, Addr: inst.addr, Name: inst.name}})
	switch {
	case err != nil:
		lg.Debug("recording a bouncer's answer failed; its next pull is sent it again", "err", err)
		return
	case res.Err != "":
		lg.Warn("bouncer answer not recorded", "err", res.Err)
		return
	}
	// This replica may trail the leader by a moment: wait for the record,
	// so that a next pull here starts from it.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if b, ok := n.fsm.Bouncer(inst.id); ok && b.Last() == at {
			return
		}
	}
}

// streamAnswer is the body of /v1/decisions/stream.
type streamAnswer struct {
	New     []streamDecision `json:"new"`
	Deleted []streamDecision `json:"deleted"`
}

// streamDecision is a decision in CrowdSec's local API fields.
type streamDecision struct {
	ID        int64  `json:"id"`
	Origin    string `json:"origin"`
	Type      string `json:"type"`
	Scope     string `json:"scope"`
	Value     string `json:"value"`
	Scenario  string `json:"scenario"`
	Duration  string `json:"duration"`
	Until     string `json:"until"`
	Simulated bool   `json:"simulated"`
	UUID      string `json:"uuid"`
}

func toStream(d detect.Decision, now time.Time) streamDecision {
	v := d.View(now)
	return streamDecision{ID: d.ID, Origin: d.Origin, Type: d.Type, Scope: d.Scope, Value: d.Value, Scenario: d.BouncerScenario(),
		Duration: v.Duration, Until: v.Until, UUID: fmt.Sprintf("warden-decision-%d", d.ID)}
}

func toStreamList(ds []detect.Decision, now time.Time) []streamDecision {
	out := make([]streamDecision, 0, len(ds))
	for _, d := range ds {
		out = append(out, toStream(d, now))
	}
	return out
}

// handleLiveDecisions answers a bouncer in live mode, as CrowdSec's GET
// /v1/decisions: the decisions in force that match ip or range (those
// covering it, or with contains=false those within it), value, type, scope
// or scopes, origins and the scenario filters; `null` when none, as
// CrowdSec. HEAD answers the status alone.
func (n *Node) handleLiveDecisions(w http.ResponseWriter, r *http.Request) {
	if _, ok := n.bouncerKey(w, r); !ok {
		return
	}
	q := r.URL.Query()
	lq := detect.LiveQuery{DecisionFilter: decisionFilter(q, ""), Type: q.Get("type"), Value: q.Get("value"), Contains: true}
	if s := q.Get("contains"); s != "" {
		c, err := strconv.ParseBool(s)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"message": fmt.Sprintf("contains=%q: want true or false", s)})
			return
		}
		lq.Contains = c
	}
	for _, p := range []string{"range", "ip"} { // ip wins when both are given
		if s := q.Get(p); s != "" {
			pfx, err := detect.ParsePrefix(s)
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"message": fmt.Sprintf("%s: %v", p, err)})
				return
			}
			lq.Prefix = pfx
		}
	}
	now := time.Now()
	ds := n.fsm.LiveDecisions(lq, now)
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	if len(ds) == 0 {
		writeJSON(w, http.StatusOK, nil)
		return
	}
	writeJSON(w, http.StatusOK, toStreamList(ds, now))
}

// handleHeartbeat serves GET /v1/heartbeat: 200 with no body, as CrowdSec.
func (n *Node) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	if _, ok := n.bouncerKey(w, r); !ok {
		return
	}
	w.WriteHeader(http.StatusOK)
}

// handleUsageMetrics serves POST /v1/usage-metrics, where recent bouncers
// report what they blocked: accepted (201, no body, as CrowdSec) and
// dropped; Warden's own metrics say what it decided.
func (n *Node) handleUsageMetrics(w http.ResponseWriter, r *http.Request) {
	if _, ok := n.bouncerKey(w, r); !ok {
		return
	}
	_, _ = io.Copy(io.Discard, r.Body)
	w.WriteHeader(http.StatusCreated)
}
