package node

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/wardenhq/warden/fsm"
)

// The cluster-wide settings (log format, retention, rules, allow-list) live
// in the FSM with a version. The first leader's flags bootstrap them; after
// that they change only by an explicit command: POST /v1/config (warden
// config apply), or a node started with a --config-version above the
// cluster's. An election never changes them, so a leader started without
// --allow cannot wipe the allow-list and get allowed addresses banned.

// flagConfig is the cluster configuration this node's flags describe.
func (n *Node) flagConfig() fsm.Config {
	return fsm.Config{Version: n.cfg.ConfigVersion, LogFormat: n.cfg.LogFormat, Retention: n.cfg.Retention.String(),
		Rules: n.cfg.Rules, Allow: n.cfg.Allow, MaxUnpublishedAlerts: n.cfg.MaxUnpublishedAlerts, StartOffset: n.cfg.StartOffset, Simulate: n.cfg.Simulate,
		InputKeyedByClient: n.cfg.InputKeyedByClient, MaxLateness: lateness(n.cfg.MaxLateness)}
}

// lateness is the configuration's spelling of a max lateness ("" for none).
func lateness(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return d.String()
}

// proposeFlagConfig proposes the node's flags as the cluster configuration.
func (n *Node) proposeFlagConfig(lg *slog.Logger, why string) {
	c := n.flagConfig()
	c.SetBy = fmt.Sprintf("node %s (%s)", n.cfg.ID, why)
	c.SetAt = time.Now().UTC().Format(time.RFC3339)
	res, err := n.propose(n.ctx, fsm.Command{Kind: fsm.KindConfigure, Config: &c})
	switch {
	case err != nil:
		lg.Warn("recording the processing configuration failed", "err", err)
	case res.Err != "":
		lg.Debug("processing configuration not applied", "err", res.Err)
	default:
		lg.Info("processing configuration", "version", max(c.Version, 1), "set_by", c.SetBy, "log_format", c.LogFormat, "retention", c.Retention)
	}
}

// watchClusterConfig runs on every node: it proposes the node's flags when
// their --config-version is above the cluster's, and otherwise says once per
// cluster version when the node's flags differ from the cluster's.
func (n *Node) watchClusterConfig() {
	lg := n.log.With("subsystem", "config")
	warned := uint64(0)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		cur := n.fsm.Config()
		if cur == nil || n.raft.Leader() == "" {
			continue
		}
		if n.cfg.ConfigVersion > cur.Version {
			n.proposeFlagConfig(lg, fmt.Sprintf("--config-version %d", n.cfg.ConfigVersion))
			continue
		}
		if mine := n.flagConfig(); !mine.Equal(*cur) && warned != cur.Version {
			warned = cur.Version
			lg.Warn("this node's --log-format, --retention, --rules or --allow differ from the cluster's configuration, which applies; change it with 'warden config apply', or start with a higher --config-version",
				"cluster_version", cur.Version, "set_by", cur.SetBy, "differs", strings.Join(configDiff(mine, *cur), ","))
		}
	}
}

// configDiff names the settings in which a and b differ.
func configDiff(a, b fsm.Config) []string {
	var out []string
	if a.LogFormat != b.LogFormat {
		out = append(out, "log-format")
	}
	if a.Retention != b.Retention {
		out = append(out, "retention")
	}
	if a.Rules != b.Rules {
		out = append(out, "rules")
	}
	if !(fsm.Config{Allow: a.Allow}).Equal(fsm.Config{Allow: b.Allow}) {
		out = append(out, "allow")
	}
	if !(fsm.Config{StartOffset: a.StartOffset}).Equal(fsm.Config{StartOffset: b.StartOffset}) {
		out = append(out, "start-offset")
	}
	if a.Simulate != b.Simulate {
		out = append(out, "simulate")
	}
	if a.MaxUnpublishedAlerts != b.MaxUnpublishedAlerts {
		out = append(out, "max-unpublished-alerts")
	}
	if a.InputKeyedByClient != b.InputKeyedByClient {
		out = append(out, "input-keyed-by-client")
	}
	if a.Lateness() != b.Lateness() {
		out = append(out, "max-lateness")
	}
	return out
}

// ConfigRequest is the body of POST /v1/config: the new cluster settings,
// whole. Version, when given, must be above the cluster's (a guard against
// two operators' changes crossing); by default it is the cluster's plus one.
type ConfigRequest struct {
	Version   uint64   `json:"version,omitempty"`
	LogFormat string   `json:"log_format"`
	Retention string   `json:"retention"`
	Rules     string   `json:"rules,omitempty"`
	Allow     []string `json:"allow,omitempty"`
	// MaxUnpublishedAlerts: see Config.MaxUnpublishedAlerts.
	MaxUnpublishedAlerts int `json:"max_unpublished_alerts,omitempty"`
	// StartOffset: see Config.StartOffset.
	StartOffset string `json:"start_offset,omitempty"`
	// Simulate: see Config.Simulate.
	Simulate bool `json:"simulate,omitempty"`
	// InputKeyedByClient and MaxLateness: see Config.
	InputKeyedByClient bool   `json:"input_keyed_by_client,omitempty"`
	MaxLateness        string `json:"max_lateness,omitempty"`
	// DryRun checks the settings and answers with what would be applied.
	DryRun bool `json:"dry_run,omitempty"`
}

// handleConfig serves GET /v1/config: the cluster configuration in force.
func (n *Node) handleConfig(w http.ResponseWriter, _ *http.Request) {
	c := n.fsm.Config()
	if c == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "no cluster configuration yet (no leader has bootstrapped it)"})
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// handleApplyConfig serves POST /v1/config (admin): a new version of the
// cluster configuration, through Raft.
func (n *Node) handleApplyConfig(w http.ResponseWriter, r *http.Request) {
	var req ConfigRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body: " + err.Error()})
		return
	}
	cur := n.fsm.Config()
	if req.Version == 0 && cur != nil {
		req.Version = cur.Version + 1
	}
	if req.Retention == "" {
		req.Retention = "24h0m0s"
	}
	ret, err := time.ParseDuration(req.Retention)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("retention %q: want a duration such as 24h", req.Retention)})
		return
	}
	check := n.cfg
	check.LogFormat, check.Retention, check.Rules, check.Allow = req.LogFormat, ret, req.Rules, req.Allow
	check.MaxUnpublishedAlerts, check.StartOffset = req.MaxUnpublishedAlerts, req.StartOffset
	if req.MaxLateness != "" {
		if check.MaxLateness, err = time.ParseDuration(req.MaxLateness); err != nil || check.MaxLateness < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("max_lateness %q: want a duration such as 5m, or 0s for none", req.MaxLateness)})
			return
		}
	}
	if check.LogFormat == "" {
		check.LogFormat = "auto"
	}
	if err := check.Validate(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	c := fsm.Config{Version: req.Version, SetBy: "operator via " + n.cfg.ID + " (POST /v1/config from " + r.RemoteAddr + ")",
		SetAt: time.Now().UTC().Format(time.RFC3339), LogFormat: check.LogFormat, Retention: ret.String(), Rules: req.Rules, Allow: req.Allow,
		MaxUnpublishedAlerts: req.MaxUnpublishedAlerts, StartOffset: req.StartOffset, Simulate: req.Simulate,
		InputKeyedByClient: req.InputKeyedByClient, MaxLateness: lateness(check.MaxLateness)}
	if req.DryRun {
		writeJSON(w, http.StatusOK, c)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	res, err := n.proposeOperator(ctx, fsm.Command{Kind: fsm.KindConfigure, Config: &c})
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	if res.Err != "" {
		code := http.StatusBadRequest
		if strings.Contains(res.Err, fsm.ErrStaleConfig.Error()) {
			code = http.StatusConflict
		}
		writeJSON(w, code, map[string]string{"error": res.Err})
		return
	}
	// Applied on the leader; wait (briefly) for this node's replica, so that
	// a read here right after sees it.
	deadline := time.Now().Add(2 * time.Second)
	for cur := n.fsm.Config(); (cur == nil || cur.Version < c.Version) && time.Now().Before(deadline); cur = n.fsm.Config() {
		time.Sleep(20 * time.Millisecond)
	}
	writeJSON(w, http.StatusOK, c)
}
