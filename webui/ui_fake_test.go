package webui

import (
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// livePeers is a uiBackend that passes everything to a real controller but makes its peers
// look alive: online, recent handshakes and traffic derived from each peer's name. Real peers
// need real WireGuard clients; the pages only need their numbers.
type livePeers struct {
	uiBackend
	now time.Time
}

func (l *livePeers) live(p control.PeerInfo) control.PeerInfo {
	h := fnv.New64a()
	h.Write([]byte(p.TenantName + "/" + p.Name))
	v := h.Sum64()
	if !p.Enabled {
		return p
	}
	switch {
	case v%5 != 0:
		p.Online = true
		p.LastHandshake = l.now.Add(-time.Duration(v%170) * time.Second)
		p.Endpoint = fmt.Sprintf("198.51.100.%d:%d", v%250+1, 40000+v%20000)
	case v%2 == 0:
		p.LastHandshake = l.now.Add(-time.Duration(v%(72*3600)+600) * time.Second)
	}
	if !p.LastHandshake.IsZero() {
		p.RxBytes = v % (3 << 30)
		p.TxBytes = (v >> 20) % (12 << 30)
	}
	return p
}

func (l *livePeers) ListPeers(ctx context.Context, tenant string) ([]control.PeerInfo, error) {
	ps, err := l.uiBackend.ListPeers(ctx, tenant)
	for i := range ps {
		ps[i] = l.live(ps[i])
	}
	return ps, err
}

func (l *livePeers) Peer(ctx context.Context, tenant, name string) (control.PeerInfo, error) {
	p, err := l.uiBackend.Peer(ctx, tenant, name)
	return l.live(p), err
}

func (l *livePeers) Status(ctx context.Context) (control.Status, error) {
	st, err := l.uiBackend.Status(ctx)
	if err != nil {
		return st, err
	}
	st.StartedAt = l.now.Add(-(3*24*time.Hour + 4*time.Hour + 12*time.Minute))
	ps, err := l.ListPeers(ctx, "")
	if err != nil {
		return st, err
	}
	st.PeersOnline, st.RxBytes, st.TxBytes = 0, 0, 0
	byName := map[string]*control.TenantStatus{}
	for i := range st.Tenants {
		t := &st.Tenants[i]
		t.Peers, t.Online, t.RxBytes, t.TxBytes = 0, 0, 0, 0
		byName[t.Name] = t
	}
	for _, p := range ps {
		t := byName[p.TenantName]
		t.Peers++
		if p.Online {
			st.PeersOnline++
			t.Online++
			t.Flows += 7
		}
		st.RxBytes += p.RxBytes
		st.TxBytes += p.TxBytes
		t.RxBytes += p.RxBytes
		t.TxBytes += p.TxBytes
	}
	if t := byName["acme"]; t != nil {
		t.Drops = map[string]uint64{"from_peer.policy_deny": 1312, "to_peer.default_deny": 87}
	}
	st.Drops = map[string]uint64{"unknown_peer": 42}
	return st, nil
}

// TenantTraffic and PeerTraffic draw a made-up history of the span before l.now: a working
// day's curve (busy from 08:00 to 18:00 UTC) scaled by the name, sent less than received.
func (l *livePeers) TenantTraffic(_ context.Context, tenant string, span time.Duration) (control.TrafficSeries, error) {
	return l.history(tenant, span, 5*time.Minute, 40<<20), nil
}

func (l *livePeers) PeerTraffic(_ context.Context, tenant, name string, span time.Duration) (control.TrafficSeries, error) {
	return l.history(tenant+"/"+name, span, 5*time.Minute, 6<<20), nil
}

func (l *livePeers) history(name string, span, step time.Duration, scale uint64) control.TrafficSeries {
	h := fnv.New64a()
	h.Write([]byte(name))
	v := h.Sum64()
	s := control.TrafficSeries{Step: step}
	first := store.TruncateTime(l.now.Add(-span), step).Add(step)
	for at := first; !at.After(l.now); at = at.Add(step) {
		hour := float64(at.Hour()) + float64(at.Minute())/60
		load := 0.05
		if hour >= 8 && hour < 18 {
			load = 0.4 + 0.6*math.Sin((hour-8)/10*math.Pi)
		}
		wobble := float64((v>>(at.Minute()%32))%100) / 100
		rx := uint64(float64(scale) * load * (0.7 + 0.6*wobble))
		p := store.TrafficSample{At: at, Traffic: store.Traffic{RxBytes: rx, TxBytes: rx / 3, RxPackets: rx / 900, TxPackets: rx / 2700}}
		s.Points = append(s.Points, p)
		s.Total.Add(p.Traffic)
	}
	return s
}

// manyPeers is a uiBackend for the peers page alone: n generated peers in tenants, as the
// controller would list them (a fresh slice per call). A real node with 10,000 peers takes
// too long to set up for a benchmark.
type manyPeers struct {
	uiBackend // nil: only the methods below may be called
	tenants   []control.TenantInfo
	peers     []control.PeerInfo
}

func newManyPeers(n int, tenants ...string) *manyPeers {
	now := time.Now()
	m := &manyPeers{}
	for i, t := range tenants {
		m.tenants = append(m.tenants, control.TenantInfo{Tenant: store.Tenant{ID: int64(i + 1), Name: t, CreatedAt: now}})
	}
	groups := [][]string{nil, {"eng"}, {"eng", "laptops"}, {"sales"}, {"ops", "servers"}}
	l := livePeers{now: now}
	for i := range n {
		ti := i % len(tenants)
		k := store.Key{byte(i), byte(i >> 8), byte(i >> 16), 1}
		p := control.PeerInfo{Peer: store.Peer{
			ID: int64(i + 1), TenantID: int64(ti + 1), TenantName: tenants[ti],
			Name: fmt.Sprintf("device-%05d", i), PublicKey: k, HasPrivateKey: true,
			IPv4:    netip.AddrFrom4([4]byte{100, 64 + byte(i>>16), byte(i >> 8), byte(i)}),
			IPv6:    netip.MustParseAddr(fmt.Sprintf("fd00:1::%x", i)),
			Enabled: i%17 != 0, CreatedAt: now, UpdatedAt: now, Groups: groups[i%len(groups)],
		}}
		m.peers = append(m.peers, l.live(p))
		m.tenants[ti].Peers++
	}
	// In the controller's order.
	slices.SortFunc(m.peers, func(a, b control.PeerInfo) int {
		return cmp.Or(strings.Compare(a.TenantName, b.TenantName), strings.Compare(a.Name, b.Name))
	})
	return m
}

func (m *manyPeers) ListTenants(context.Context) ([]control.TenantInfo, error) {
	return slices.Clone(m.tenants), nil
}

func (m *manyPeers) ListPeers(_ context.Context, tenant string) ([]control.PeerInfo, error) {
	if tenant == "" {
		return slices.Clone(m.peers), nil
	}
	var out []control.PeerInfo
	for _, p := range m.peers {
		if p.TenantName == tenant {
			out = append(out, p)
		}
	}
	if out == nil && !slices.ContainsFunc(m.tenants, func(t control.TenantInfo) bool { return t.Name == tenant }) {
		return nil, fmt.Errorf("tenant %q: %w", tenant, store.ErrNotFound)
	}
	return out, nil
}
