package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/popgate/popgate/webui"
)

var statusSpec = cmdSpec{
	name:  "status",
	usage: "status [--json] [--data-dir DIR]",
	about: "Show the running node (name, version, region, uptime), its WireGuard device (with what became of the handshake initiations it received: " +
		"routed, answered with a cookie reply under load, dropped by reason), how many peers are enabled and online, " +
		"and per tenant: peers, traffic, tracked flows, dropped packets by reason and how many new flows each policy rule decided.",
	example: "popgate status\nPOPGATE_DATA_DIR=/var/lib/popgate popgate status --json",
}

func (a *app) cmdStatus(ctx context.Context, args []string) error {
	f := newAdminFlags(statusSpec).withJSON()
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	var st webui.APIStatus
	if printed, err := a.getOrPrintJSON(ctx, f, "/api/v1/status", &st); printed || err != nil {
		return err
	}
	n, d, p := st.Node, st.Device, st.Peers
	var b strings.Builder
	kv := func(key, format string, args ...any) {
		v := fmt.Sprintf(format, args...)
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(&b, "  %-17s %s\n", key+":", v)
	}
	b.WriteString("node\n")
	kv("name", "%s", n.Name)
	kv("version", "%s", n.Version)
	kv("roles", "%s", strings.Join(n.Roles, ", "))
	kv("region", "%s", n.Region)
	kv("uptime", "%s (since %s)", humanDuration(n.UptimeSeconds), n.StartedAt.Local().Format("2006-01-02 15:04:05 MST"))
	if c := st.Controller; c != nil {
		b.WriteString("controller\n")
		kv("address", "%s", c.Address)
		switch {
		case c.Connected:
			kv("sync", "connected since %s", c.Since.Local().Format("2006-01-02 15:04:05 MST"))
		default:
			kv("sync", "STALE: without the controller since %s (%s ago), serving the last desired state", c.Since.Local().Format("2006-01-02 15:04:05 MST"), humanDuration(int64(a.now().Sub(c.Since).Seconds())))
		}
		if c.FromCache && c.SavedAt != nil {
			kv("serving", "the state kept at %s (%s old)", c.SavedAt.Local().Format("2006-01-02 15:04:05 MST"), humanDuration(int64(a.now().Sub(*c.SavedAt).Seconds())))
		}
		if c.LastError != "" {
			kv("last error", "%s", c.LastError)
		}
		if ds := st.Desired; ds != nil {
			kv("generation", "%d applied", ds.Applied)
		}
	}
	if bb := st.Backbone; bb != nil {
		b.WriteString("backbone\n")
		kv("port", "%d/udp", bb.Port)
		kv("public key", "%s", bb.PublicKey)
		for _, l := range bb.Links {
			name := l.Node
			if name == "" {
				name = fmt.Sprint("node ", l.NodeID)
			}
			kv("link "+name, "%s, rtt %.1f ms, loss %d%%", l.State, float64(l.RTTMicros)/1000, l.LossPercent)
		}
	}
	b.WriteString("device\n")
	kv("interface", "%s", d.Interface)
	kv("public key", "%s", d.PublicKey)
	kv("listen port", "%d/udp", d.ListenPort)
	kv("public endpoint", "%s", d.PublicEndpoint)
	kv("mtu", "%d", d.MTU)
	kv("exit mode", "%s", d.ExitMode)
	kv("addresses", "%s", strings.Join(d.Addresses, ", "))
	kv("uapi socket", "%s", d.UAPISocket)
	kv("transfer", "%s received, %s sent", humanBytes(d.RxBytes), humanBytes(d.TxBytes))
	if d.ExitSocketBudget > 0 {
		kv("exit sockets", "%d of %d", d.ExitSockets, d.ExitSocketBudget)
	}
	hs := d.Handshakes
	kv("handshakes", "%d initiations, %d routed, %d cookie replies, under load: %s, %d queued",
		hs.Initiations, hs.Routed, hs.CookieReplies, yesNo(hs.UnderLoad), hs.Queued)
	kv("handshake drops", "%s", drops(hs.Drops))
	if ds := st.Desired; ds != nil && ds.Error != "" {
		b.WriteString("desired state\n")
		kv("generation", "%d stored, %d applied", ds.Generation, ds.Applied)
		kv("not applied", "%s", ds.Error)
	}
	b.WriteString("peers\n")
	kv("total", "%d", p.Total)
	kv("enabled", "%d", p.Enabled)
	kv("online", "%d", p.Online)
	for _, t := range st.Tenants {
		fmt.Fprintf(&b, "tenant %s\n", t.Name)
		kv("peers", "%d, %d online", t.Peers, t.Online)
		kv("transfer", "%s received, %s sent", humanBytes(t.RxBytes), humanBytes(t.TxBytes))
		kv("tracked flows", "%d", t.Flows)
		kv("exit flows", "tcp %d, udp %d, icmp %d", t.ExitFlows.TCP, t.ExitFlows.UDP, t.ExitFlows.ICMP)
		kv("flow limits", "%d per peer, %d in all", t.MaxFlowsPerPeer, t.MaxFlows)
		kv("drops", "%s", drops(t.Drops))
		if len(t.Evicted) > 0 {
			kv("evicted flows", "%s", drops(t.Evicted))
		}
		if len(t.Rules) == 0 {
			kv("policy rules", "")
			continue
		}
		b.WriteString("  policy rules:\n")
		tw := newTable(&b)
		fmt.Fprintln(tw, "    LINE\tHITS\tRULE")
		for _, r := range t.Rules {
			line := "-" // a default the file does not state
			if r.Line > 0 {
				line = strconv.Itoa(r.Line)
			}
			fmt.Fprintf(tw, "    %s\t%d\t%s\n", line, r.Hits, r.Rule)
		}
		tw.Flush()
	}
	_, err := io.WriteString(a.stdout, b.String())
	return err
}

// drops lists the non-zero drop counters by reason: "cross_tenant 2, to_peer.policy_deny 7",
// or "none".
func drops(m map[string]uint64) string {
	var parts []string
	for _, reason := range slices.Sorted(maps.Keys(m)) {
		if n := m[reason]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", reason, n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
