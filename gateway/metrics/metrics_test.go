package metrics

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/popgate/popgate/gateway/plane"
)

var (
	t0      = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	applied = t0.Add(time.Hour)
)

func fakeReport() plane.Report {
	rules := []plane.RuleStat{{Line: 2, Rule: "deny any -> 100.64.0.0/10", Hits: 4, Since: t0}, {Line: 3, Rule: "allow any -> any", Hits: 9, Since: applied}}
	rules = append(rules, plane.RuleStat{Line: 1, Rule: "default deny", Hits: 2, Since: applied})
	return plane.Report{
		Format: plane.Format, Generation: 41,
		Node: plane.NodeStatus{Name: "pop-1", Version: "1.2.3", Region: "fra", StartedAt: t0, ListenPort: 51820,
			Drops:       map[string]uint64{"no_peer": 3},
			ExitSockets: 5, ExitSocketBudget: 1000, ExitTCPRetransmits: 31, ExitTCPTimeouts: 2,
			Handshakes: plane.HandshakeStatus{Initiations: 100, Routed: 90, CookieReplies: 7, UnderLoad: true, Queued: 2,
				Drops: map[string]uint64{"bad_mac1": 1, "rate_limited": 2}},
			Traffic: plane.Traffic{RxBytes: 5000, TxBytes: 7000, RxPackets: 50, TxPackets: 70}},
		Peers: []plane.PeerState{{Online: true, RxBytes: 1}, {Online: false}, {Online: true}},
		Tenants: []plane.TenantState{
			{ID: 1, Name: "acme", Traffic: plane.Traffic{RxBytes: 4000, TxBytes: 6000, RxPackets: 40, TxPackets: 60},
				Flows: 12, ExitTCP: 3, ExitUDP: 2, Drops: map[string]uint64{"no_route": 1, "from_peer.default_deny": 6},
				Evicted: map[string]uint64{"conntrack": 1}, Rules: rules},
			{ID: 2}, // no name (an older node): its id
		},
	}
}

func newTestCollector(t *testing.T, r plane.Report, f Facts) *Collector {
	t.Helper()
	c, err := New(Config{Report: func() plane.Report { return r }, Facts: func() Facts { return f },
		Now: func() time.Time { return t0.Add(90 * time.Minute) }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCollector: the families lint clean (promlint, as promtool does) and carry the
// report's figures: counters as counters, gauges as gauges.
func TestCollector(t *testing.T) {
	c := newTestCollector(t, fakeReport(), Facts{Roles: []string{"controller", "pop", "exit"}, DesiredGeneration: 42, StaleSince: t0.Add(80 * time.Minute), EventsDropped: 3})
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	want := `
# HELP popgate_desired_generation Generation of the newest desired state the node knows of.
# TYPE popgate_desired_generation gauge
popgate_desired_generation 42
# HELP popgate_applied_generation Generation of the desired state the node applied in full last.
# TYPE popgate_applied_generation gauge
popgate_applied_generation 41
# HELP popgate_desired_staleness_seconds How long the node has served without its controller (its desired state may be old); 0 while current.
# TYPE popgate_desired_staleness_seconds gauge
popgate_desired_staleness_seconds 600
# HELP popgate_events_dropped_total Events (link down, failover, …) dropped before they were recorded: more came than the node or controller could keep.
# TYPE popgate_events_dropped_total counter
popgate_events_dropped_total 3
# HELP popgate_ready 1 when the node is ready to serve, as /readyz says (device up, newest desired state applied), else 0.
# TYPE popgate_ready gauge
popgate_ready 0
# HELP popgate_uptime_seconds How long the node has served.
# TYPE popgate_uptime_seconds gauge
popgate_uptime_seconds 5400
# HELP popgate_node_info The node: 1, labelled with its name, region and roles (comma-separated).
# TYPE popgate_node_info gauge
popgate_node_info{name="pop-1",region="fra",roles="controller,pop,exit"} 1
# HELP popgate_handshake_initiations_total Well-formed WireGuard handshake initiations received on the shared socket.
# TYPE popgate_handshake_initiations_total counter
popgate_handshake_initiations_total 100
# HELP popgate_handshake_initiations_rejected_total Handshake initiations dropped, by reason.
# TYPE popgate_handshake_initiations_rejected_total counter
popgate_handshake_initiations_rejected_total{reason="bad_mac1"} 1
popgate_handshake_initiations_rejected_total{reason="rate_limited"} 2
# HELP popgate_handshake_under_load 1 while handshake initiations need a valid mac2 (the node is under load), else 0.
# TYPE popgate_handshake_under_load gauge
popgate_handshake_under_load 1
# HELP popgate_handshake_cookie_replies_total Handshake initiations answered with a cookie reply (under load, without a valid mac2).
# TYPE popgate_handshake_cookie_replies_total counter
popgate_handshake_cookie_replies_total 7
# HELP popgate_received_bytes_total WireGuard datagram bytes received from peers, removed peers included.
# TYPE popgate_received_bytes_total counter
popgate_received_bytes_total 5000
# HELP popgate_sent_packets_total IP packets towards peers the packet path passed (policy drops excluded).
# TYPE popgate_sent_packets_total counter
popgate_sent_packets_total 70
# HELP popgate_exit_tcp_retransmits_total TCP segments the userspace exit sent again towards clients (loss on the client leg).
# TYPE popgate_exit_tcp_retransmits_total counter
popgate_exit_tcp_retransmits_total 31
# HELP popgate_exit_tcp_timeouts_total Retransmission timeouts of the userspace exit's TCP towards clients: losses repaired only after a timer, each stalling its flow.
# TYPE popgate_exit_tcp_timeouts_total counter
popgate_exit_tcp_timeouts_total 2
# HELP popgate_peers_online Peers with a handshake in the last 3 minutes.
# TYPE popgate_peers_online gauge
popgate_peers_online 2
# HELP popgate_tenant_sent_bytes_total WireGuard datagram bytes sent to the tenant's peers.
# TYPE popgate_tenant_sent_bytes_total counter
popgate_tenant_sent_bytes_total{tenant="2"} 0
popgate_tenant_sent_bytes_total{tenant="acme"} 6000
# HELP popgate_tenant_exit_flows The tenant's flows through the userspace exit, by protocol.
# TYPE popgate_tenant_exit_flows gauge
popgate_tenant_exit_flows{protocol="icmp",tenant="2"} 0
popgate_tenant_exit_flows{protocol="icmp",tenant="acme"} 0
popgate_tenant_exit_flows{protocol="tcp",tenant="2"} 0
popgate_tenant_exit_flows{protocol="tcp",tenant="acme"} 3
popgate_tenant_exit_flows{protocol="udp",tenant="2"} 0
popgate_tenant_exit_flows{protocol="udp",tenant="acme"} 2
# HELP popgate_tenant_dropped_packets_total The tenant's dropped packets, by reason (the firewall's as direction.reason).
# TYPE popgate_tenant_dropped_packets_total counter
popgate_tenant_dropped_packets_total{reason="from_peer.default_deny",tenant="acme"} 6
popgate_tenant_dropped_packets_total{reason="no_route",tenant="acme"} 1
# HELP popgate_tenant_policy_rule_hits_total New flows each rule of the tenant's policy decided, by rule index (from 0), other (past the first 100) and default; a changed rule starts again.
# TYPE popgate_tenant_policy_rule_hits_total counter
popgate_tenant_policy_rule_hits_total{rule="0",tenant="acme"} 4
popgate_tenant_policy_rule_hits_total{rule="1",tenant="acme"} 9
popgate_tenant_policy_rule_hits_total{rule="default",tenant="acme"} 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"popgate_desired_generation", "popgate_applied_generation", "popgate_desired_staleness_seconds", "popgate_events_dropped_total", "popgate_ready", "popgate_uptime_seconds",
		"popgate_node_info", "popgate_handshake_initiations_total", "popgate_handshake_initiations_rejected_total",
		"popgate_handshake_under_load", "popgate_handshake_cookie_replies_total", "popgate_received_bytes_total",
		"popgate_sent_packets_total", "popgate_peers_online", "popgate_exit_tcp_retransmits_total", "popgate_exit_tcp_timeouts_total",
		"popgate_tenant_sent_bytes_total", "popgate_tenant_exit_flows",
		"popgate_tenant_dropped_packets_total", "popgate_tenant_policy_rule_hits_total"); err != nil {
		t.Error(err)
	}

	// A rule counter says since when it counts: its created timestamp.
	created := map[string]time.Time{}
	for _, m := range collect(t, c, "popgate_tenant_policy_rule_hits_total") {
		created[labelValue(m, "rule")] = m.GetCounter().GetCreatedTimestamp().AsTime()
	}
	if !created["0"].Equal(t0) || !created["1"].Equal(applied) || !created["default"].Equal(applied) {
		t.Errorf("rule counters' created timestamps: %v", created)
	}
}

// TestCollectorBoundsRules: a long policy has MaxRuleSeries series of its own, the rest
// summed as "other", and its default.
func TestCollectorBoundsRules(t *testing.T) {
	r := fakeReport()
	var rules []plane.RuleStat
	for i := range MaxRuleSeries + 50 {
		rules = append(rules, plane.RuleStat{Line: i + 1, Rule: fmt.Sprint("allow any -> any tcp ", i+1), Hits: 1, Since: t0})
	}
	r.Tenants[0].Rules = append(rules, plane.RuleStat{Rule: "default deny", Hits: 3})
	r.Tenants = r.Tenants[:1]
	c := newTestCollector(t, r, Facts{})
	ms := collect(t, c, "popgate_tenant_policy_rule_hits_total")
	if len(ms) != MaxRuleSeries+2 {
		t.Errorf("%d rule series, want %d", len(ms), MaxRuleSeries+2)
	}
	for _, m := range ms {
		if labelValue(m, "rule") == "other" && m.GetCounter().GetValue() != 50 {
			t.Errorf("other = %v, want 50", m.GetCounter().GetValue())
		}
	}
}

// TestCollectorPeers: per-peer series only when asked for, for at most MaxPeerSeries peers
// (the first by tenant and name), and the count of the others.
func TestCollectorPeers(t *testing.T) {
	r := fakeReport()
	hs := t0.Add(time.Minute)
	r.Peers = []plane.PeerState{
		{Tenant: "acme", Name: "phone", RxBytes: 10, TxBytes: 20, RxPackets: 1, TxPackets: 2},
		{Tenant: "acme", Name: "laptop", Online: true, LastHandshake: hs, RxBytes: 30},
		{Tenant: "bravo", Name: "gw", RxBytes: 99},
	}
	if ms := collectAll(t, newTestCollector(t, r, Facts{})); ms["popgate_peer_received_bytes_total"] != nil || ms["popgate_peers_without_series"] != nil {
		t.Error("per-peer series without MaxPeerSeries")
	}
	c, err := New(Config{Report: func() plane.Report { return r }, MaxPeerSeries: 2})
	if err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	want := `
# HELP popgate_peer_received_bytes_total WireGuard datagram bytes received from the peer (--metrics-peers).
# TYPE popgate_peer_received_bytes_total counter
popgate_peer_received_bytes_total{peer="laptop",tenant="acme"} 30
popgate_peer_received_bytes_total{peer="phone",tenant="acme"} 10
# HELP popgate_peer_online 1 while the peer has a session (a handshake in the last 3 minutes), else 0 (--metrics-peers).
# TYPE popgate_peer_online gauge
popgate_peer_online{peer="laptop",tenant="acme"} 1
popgate_peer_online{peer="phone",tenant="acme"} 0
# HELP popgate_peers_without_series Peers the node reports that have no per-peer series: past --metrics-peers.
# TYPE popgate_peers_without_series gauge
popgate_peers_without_series 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "popgate_peer_received_bytes_total", "popgate_peer_online", "popgate_peers_without_series"); err != nil {
		t.Error(err)
	}
	if _, err := New(Config{Report: func() plane.Report { return r }, MaxPeerSeries: MaxPeerSeriesLimit + 1}); err == nil {
		t.Error("MaxPeerSeries past the limit accepted")
	}
}

// TestCollectorBackbone: each backbone link has its state (unknown as -1), RTT (once
// answered), loss and up and down counts, labelled with the name of the node it reaches.
func TestCollectorBackbone(t *testing.T) {
	r := fakeReport()
	r.Links = []plane.LinkState{
		{Node: 2, Name: "x1", State: plane.LinkUp, RTT: 12500 * time.Microsecond, Loss: 0.02, Ups: 3, Downs: 2},
		{Node: 3, Name: "x2", State: plane.LinkDown, RTT: 40 * time.Millisecond, Loss: 1, Ups: 1, Downs: 1},
		{Node: 4, State: plane.LinkUnknown}, // no name (an older controller): its ID
	}
	c := newTestCollector(t, r, Facts{})
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	want := `
# HELP popgate_backbone_link_up The backbone link to the node: 1 up, 0 down, -1 unknown (a new link its probes have not judged yet).
# TYPE popgate_backbone_link_up gauge
popgate_backbone_link_up{node="4"} -1
popgate_backbone_link_up{node="x1"} 1
popgate_backbone_link_up{node="x2"} 0
# HELP popgate_backbone_link_rtt_seconds Smoothed round trip of the probes on the backbone link to the node; absent before the first answer.
# TYPE popgate_backbone_link_rtt_seconds gauge
popgate_backbone_link_rtt_seconds{node="x1"} 0.0125
popgate_backbone_link_rtt_seconds{node="x2"} 0.04
# HELP popgate_backbone_link_loss_ratio Fraction of the latest probes (up to 100) on the backbone link to the node that went unanswered.
# TYPE popgate_backbone_link_loss_ratio gauge
popgate_backbone_link_loss_ratio{node="4"} 0
popgate_backbone_link_loss_ratio{node="x1"} 0.02
popgate_backbone_link_loss_ratio{node="x2"} 1
# HELP popgate_backbone_link_transitions_total Times the backbone link to the node became up or down (label to), since this node made the link.
# TYPE popgate_backbone_link_transitions_total counter
popgate_backbone_link_transitions_total{node="4",to="down"} 0
popgate_backbone_link_transitions_total{node="4",to="up"} 0
popgate_backbone_link_transitions_total{node="x1",to="down"} 2
popgate_backbone_link_transitions_total{node="x1",to="up"} 3
popgate_backbone_link_transitions_total{node="x2",to="down"} 1
popgate_backbone_link_transitions_total{node="x2",to="up"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "popgate_backbone_link_up", "popgate_backbone_link_rtt_seconds",
		"popgate_backbone_link_loss_ratio", "popgate_backbone_link_transitions_total"); err != nil {
		t.Error(err)
	}
	// Without a backbone: no link series.
	ms := collectAll(t, newTestCollector(t, fakeReport(), Facts{}))
	for _, name := range []string{"popgate_backbone_link_up", "popgate_backbone_link_loss_ratio", "popgate_backbone_link_transitions_total"} {
		if ms[name] != nil {
			t.Errorf("%s without a backbone: %v", name, ms[name])
		}
	}
}

// TestCollectorNodes: a controller counts the nodes that joined it by state and has each
// one's connection, applied generation and last report; a node without the controller role
// has none of these families, and a node list that fails fails the scrape.
func TestCollectorNodes(t *testing.T) {
	seen := t0.Add(30 * time.Minute)
	list := []Node{
		{Name: "pop-fra-1", Connected: true, LastSeen: seen, AppliedGeneration: 42},
		{Name: "pop-ams-1", LastSeen: t0, AppliedGeneration: 40},
		{Name: "x1"}, // joined, never reported
	}
	var listErr error
	c, err := New(Config{Report: fakeReport, Nodes: func() ([]Node, error) { return list, listErr }})
	if err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	want := fmt.Sprintf(`
# HELP popgate_nodes Nodes that joined the controller, by state: connected (a sync stream now), offline (reported before, no stream now), never (never reported).
# TYPE popgate_nodes gauge
popgate_nodes{state="connected"} 1
popgate_nodes{state="never"} 1
popgate_nodes{state="offline"} 1
# HELP popgate_node_connected 1 while the node has a sync stream with the controller, else 0.
# TYPE popgate_node_connected gauge
popgate_node_connected{node="pop-ams-1"} 0
popgate_node_connected{node="pop-fra-1"} 1
popgate_node_connected{node="x1"} 0
# HELP popgate_node_applied_generation Generation of the desired state the node applied last, as it reported.
# TYPE popgate_node_applied_generation gauge
popgate_node_applied_generation{node="pop-ams-1"} 40
popgate_node_applied_generation{node="pop-fra-1"} 42
popgate_node_applied_generation{node="x1"} 0
# HELP popgate_node_last_seen_timestamp_seconds When the node's last report reached the controller, in seconds since the Unix epoch; absent before its first.
# TYPE popgate_node_last_seen_timestamp_seconds gauge
popgate_node_last_seen_timestamp_seconds{node="pop-ams-1"} %d
popgate_node_last_seen_timestamp_seconds{node="pop-fra-1"} %d
`, t0.Unix(), seen.Unix())
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "popgate_nodes", "popgate_node_connected",
		"popgate_node_applied_generation", "popgate_node_last_seen_timestamp_seconds"); err != nil {
		t.Error(err)
	}

	// No nodes yet: every state is there, at 0.
	list = nil
	if ms := collect(t, c, "popgate_nodes"); len(ms) != 3 {
		t.Errorf("%d popgate_nodes series with no node, want 3", len(ms))
	}

	listErr = errors.New("database is locked")
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if _, err := reg.Gather(); err == nil || !strings.Contains(err.Error(), "database is locked") {
		t.Errorf("a failing node list: gather error %v, want the node list's", err)
	}

	if ms := collectAll(t, newTestCollector(t, fakeReport(), Facts{})); ms["popgate_nodes"] != nil || ms["popgate_node_connected"] != nil {
		t.Error("node families without Config.Nodes")
	}
}

func collectAll(t *testing.T, c prometheus.Collector) map[string][]*dto.Metric {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]*dto.Metric{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf.GetMetric()
	}
	return out
}

func collect(t *testing.T, c prometheus.Collector, name string) []*dto.Metric {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()
		}
	}
	t.Fatalf("no family %s", name)
	return nil
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestNewRegistry(t *testing.T) {
	reg, err := NewRegistry(newTestCollector(t, fakeReport(), Facts{}))
	if err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	mfs, _ := reg.Gather()
	have := map[string]bool{}
	for _, mf := range mfs {
		have[mf.GetName()] = true
	}
	for _, name := range []string{"popgate_build_info", "go_goroutines", "process_start_time_seconds"} {
		if !have[name] {
			t.Errorf("no %s", name)
		}
	}
}

func TestReady(t *testing.T) {
	now := t0.Add(time.Hour)
	up := plane.Report{Generation: 5, Node: plane.NodeStatus{StartedAt: t0}}
	for _, tc := range []struct {
		name     string
		r        plane.Report
		f        Facts
		maxStale time.Duration
		want     string // "" ready, else a part of the reason
	}{
		{"ready", up, Facts{DesiredGeneration: 5}, 0, ""},
		{"not started", plane.Report{}, Facts{DesiredGeneration: 5}, 0, "device is not up"},
		{"nothing applied", plane.Report{Node: up.Node}, Facts{}, 0, "no desired state applied"},
		{"behind", up, Facts{DesiredGeneration: 6}, 0, "generation 6 is not applied yet (applied: 5)"},
		{"apply failed", plane.Report{Generation: 5, Failed: 6, ApplyError: "apply: tenant acme: boom\nmore", Node: up.Node}, Facts{DesiredGeneration: 6}, 0, "generation 6 does not apply: apply: tenant acme: boom"},
		{"publish failed", up, Facts{DesiredGeneration: 6, PublishError: "no device"}, 0, "did not reach the data plane: no device"},
		{"stale, fails static", up, Facts{DesiredGeneration: 5, StaleSince: t0}, 0, ""},
		{"stale past the bound", up, Facts{DesiredGeneration: 5, StaleSince: t0}, time.Minute, "stale"},
	} {
		err := Ready(tc.r, tc.f, now, tc.maxStale)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want ready", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "\n"):
			t.Errorf("%s: more than one line: %q", tc.name, err)
		}
	}
}
