package node

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wardenhq/warden/detect"
	"github.com/wardenhq/warden/fsm"
)

// handleAlerts serves GET /v1/alerts?since=RFC3339.
func (n *Node) handleAlerts(w http.ResponseWriter, r *http.Request) {
	var since time.Time
	if s := r.URL.Query().Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("since=%q: want an RFC 3339 time", s)})
			return
		}
		since = t
	}
	writeJSON(w, http.StatusOK, n.fsm.Alerts(since))
}

// handleDecisions serves GET /v1/decisions: the decisions in force (all kept
// ones with ?all=1).
func (n *Node) handleDecisions(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	v := r.URL.Query().Get("all")
	writeJSON(w, http.StatusOK, detect.DecisionViews(n.fsm.Decisions(v == "1" || v == "true", now), now))
}

// admin checks the operator's bearer token.
func (n *Node) authorized(w http.ResponseWriter, r *http.Request) bool {
	if n.cfg.AdminToken == "" {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "no admin token configured on this node (--admin-token or $WARDEN_ADMIN_TOKEN)"})
		return false
	}
	if !n.bearerIs(r, n.cfg.AdminToken) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong admin token (Authorization: Bearer TOKEN)"})
		return false
	}
	return true
}

// DecisionRequest is the body of POST /v1/decisions.
type DecisionRequest struct {
	Value    string `json:"value"`
	Type     string `json:"type"`
	Duration string `json:"duration"`
	Reason   string `json:"reason"`
}

// handleAddDecision serves POST /v1/decisions: an operator's decision,
// through Raft.
func (n *Node) handleAddDecision(w http.ResponseWriter, r *http.Request) {
	if !n.authorized(w, r) {
		return
	}
	var req DecisionRequest
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body: want {\"value\":\"IP or CIDR\",\"type\":\"ban\",\"duration\":\"4h\",\"reason\":\"...\"}"})
		return
	}
	if req.Duration == "" {
		req.Duration = "4h"
	}
	if d, err := time.ParseDuration(req.Duration); err != nil || d <= 0 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("duration %q: want a positive duration such as 4h", req.Duration)})
		return
	}
	if err := detect.CheckRange(req.Value, n.cfg.MinDecisionPrefixV4, n.cfg.MinDecisionPrefixV6); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("value: %v on this node (--min-decision-prefix-v4, --min-decision-prefix-v6)", err)})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	res, err := n.propose(ctx, fsm.Command{Kind: fsm.KindDecisionAdd, Decision: &fsm.ManualDecision{
		Value: req.Value, Type: req.Type, Reason: req.Reason, Duration: req.Duration, Now: time.Now().UnixNano()}})
	switch {
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
	case res.Err != "":
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": res.Err})
	default:
		// The local replica may trail the leader by a moment.
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			for _, d := range n.fsm.Decisions(true, time.Now()) {
				if d.ID == res.DecisionID {
					writeJSON(w, http.StatusCreated, d.View(time.Now()))
					return
				}
			}
		}
		writeJSON(w, http.StatusCreated, map[string]int64{"id": res.DecisionID})
	}
}

// handleDeleteDecision serves DELETE /v1/decisions/{id}.
func (n *Node) handleDeleteDecision(w http.ResponseWriter, r *http.Request) {
	if !n.authorized(w, r) {
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "decision id must be a number"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	res, err := n.propose(ctx, fsm.Command{Kind: fsm.KindDecisionDelete, ID: id})
	switch {
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
	case res.Err != "":
		writeJSON(w, http.StatusNotFound, map[string]string{"error": res.Err})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"deleted": id})
	}
}

// bouncerStreams remembers, per API key, which decisions that bouncer holds.
type bouncerStreams struct {
	mu   sync.Mutex
	sent map[string]map[int64]bool
}

// handleStream serves GET /v1/decisions/stream as CrowdSec's local API does:
// startup=true sends every decision in force; later calls send what is new
// and what was deleted or expired since that key's last pull.
func (n *Node) handleStream(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("X-Api-Key")
	known := false
	for _, k := range n.cfg.BouncerKeys {
		known = known || subtle.ConstantTimeCompare([]byte(k), []byte(key)) == 1
	}
	if key == "" || !known {
		writeJSON(w, http.StatusForbidden, map[string]string{"message": "access forbidden"})
		return
	}
	q := r.URL.Query()
	scopes := map[string]bool{"ip": true, "range": true}
	if s := q.Get("scopes"); s != "" {
		scopes = map[string]bool{}
		for _, x := range strings.Split(s, ",") {
			scopes[strings.ToLower(strings.TrimSpace(x))] = true
		}
	}
	now := time.Now()
	active := map[int64]detect.Decision{}
	all := n.fsm.Decisions(true, now)
	for _, d := range all {
		if d.Active(now) && scopes[strings.ToLower(d.Scope)] {
			active[d.ID] = d
		}
	}
	s := &n.streams
	s.mu.Lock()
	if s.sent == nil {
		s.sent = map[string]map[int64]bool{}
	}
	sent := s.sent[key]
	if sent == nil || q.Get("startup") == "true" {
		sent = map[int64]bool{}
	}
	resp := struct {
		New     []streamDecision `json:"new"`
		Deleted []streamDecision `json:"deleted"`
	}{New: []streamDecision{}, Deleted: []streamDecision{}}
	byID := map[int64]detect.Decision{}
	for _, d := range all {
		byID[d.ID] = d
	}
	for id := range sent {
		if _, ok := active[id]; !ok {
			d, kept := byID[id]
			if !kept {
				d = detect.Decision{ID: id, Type: "ban", Scope: "Ip"}
			}
			resp.Deleted = append(resp.Deleted, toStream(d, now))
			delete(sent, id)
		}
	}
	for id, d := range active {
		if !sent[id] {
			resp.New = append(resp.New, toStream(d, now))
			sent[id] = true
		}
	}
	s.sent[key] = sent
	s.mu.Unlock()
	sort.Slice(resp.New, func(i, j int) bool { return resp.New[i].ID < resp.New[j].ID })
	sort.Slice(resp.Deleted, func(i, j int) bool { return resp.Deleted[i].ID < resp.Deleted[j].ID })
	writeJSON(w, http.StatusOK, resp)
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
	return streamDecision{ID: d.ID, Origin: d.Origin, Type: d.Type, Scope: d.Scope, Value: d.Value, Scenario: d.Scenario,
		Duration: v.Duration, Until: v.Until, UUID: fmt.Sprintf("warden-decision-%d", d.ID)}
}

// handleBlocklist serves GET /v1/blocklist?format=plain|nginx|apache|nftables:
// the addresses and ranges banned now, for enforcement without a bouncer.
func (n *Node) handleBlocklist(w http.ResponseWriter, r *http.Request) {
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "plain"
	}
	var values []string
	seen := map[string]bool{}
	for _, d := range n.fsm.Decisions(false, time.Now()) {
		if d.Type == "ban" && !seen[d.Value] {
			seen[d.Value] = true
			values = append(values, d.Value)
		}
	}
	sort.Strings(values)
	body, err := detect.Blocklist(format, values)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, body)
}
