package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
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

// handleDecisions serves GET (and HEAD) /v1/decisions. A bouncer's request
// (X-Api-Key, or any of CrowdSec's live-mode parameters) is answered as
// CrowdSec's local API does (handleLiveDecisions); any other gets Warden's
// own list, behind the read token. The route is open so that bouncers,
// which carry no bearer token, reach it.
func (n *Node) handleDecisions(w http.ResponseWriter, r *http.Request) {
	if isBouncerQuery(r) {
		n.handleLiveDecisions(w, r)
		return
	}
	n.guard(read, n.handleDecisionList)(w, r)
}

// handleDecisionList is Warden's document of GET /v1/decisions: the
// decisions in force (all kept ones with ?all=1).
func (n *Node) handleDecisionList(w http.ResponseWriter, r *http.Request) {
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
	res, err := n.proposeOperator(ctx, fsm.Command{Kind: fsm.KindDecisionAdd, Decision: &fsm.ManualDecision{
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
	res, err := n.proposeOperator(ctx, fsm.Command{Kind: fsm.KindDecisionDelete, ID: id})
	switch {
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
	case res.Err != "":
		writeJSON(w, http.StatusNotFound, map[string]string{"error": res.Err})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"deleted": id})
	}
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
