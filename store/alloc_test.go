package store

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// addrs adds peers named prefix0, prefix1, … to tenant acme and returns their IPv4 addresses.
func addPeers(t *testing.T, s *Store, prefix string, n int) []string {
	t.Helper()
	var out []string
	for i := range n {
		p := mustPeer(t, s, newPeer(t, "acme", fmt.Sprint(prefix, i)))
		out = append(out, p.IPv4.String())
	}
	return out
}

func TestAllocSequential(t *testing.T) {
	s, _ := openTest(t)
	mustTenant(t, s, "acme")
	got := addPeers(t, s, "p", 4)
	want := []string{"100.64.0.2", "100.64.0.3", "100.64.0.4", "100.64.0.5"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("addresses %v, want %v (100.64.0.0 and the gateway .1 skipped)", got, want)
	}
}

func TestAllocCrossesOctets(t *testing.T) {
	s, _ := openTest(t)
	mustTenant(t, s, "acme")
	s.v4First = 0x644000FE // 100.64.0.254
	got := addPeers(t, s, "p", 3)
	if want := "[100.64.0.254 100.64.0.255 100.64.1.0]"; fmt.Sprint(got) != want {
		t.Errorf("addresses %v, want %s: .255 and .0 inside the /10 are ordinary addresses", got, want)
	}
}

func TestAllocPoolBounds(t *testing.T) {
	// The real pool's top: the last address handed out is 100.126.255.255, below the
	// nodes' block 100.127.0.0/16, and then the pool is exhausted (no other gap exists).
	ctx := context.Background()
	s, _ := openTest(t)
	mustTenant(t, s, "acme")
	if s.v4First != ipv4First || s.v4Last != ipv4Last {
		t.Fatalf("pool is %#x-%#x", s.v4First, s.v4Last)
	}
	if got := addrFromUint32(ipv4Last); got != netip.MustParseAddr("100.126.255.255") || nodeBlockV4().Contains(got) || !nodeBlockV4().Contains(got.Next()) {
		t.Fatalf("ipv4Last = %v, want the address just below the nodes' block %s", got, nodeBlockV4())
	}
	// Pretend every address below the top was once assigned and is still held, by filling
	// the high-water mark and only the lowest address.
	first := mustPeer(t, s, newPeer(t, "acme", "first"))
	if err := putSetting(ctx, s.db, settingIPv4HighWater, fmt.Sprint(ipv4Last-1), 1); err != nil {
		t.Fatal(err)
	}
	top := mustPeer(t, s, newPeer(t, "acme", "top"))
	if top.IPv4 != netip.MustParseAddr("100.126.255.255") {
		t.Errorf("top peer got %v", top.IPv4)
	}
	// The pool is at its top: the next peer gets the lowest gap, 100.64.0.3.
	if p := mustPeer(t, s, newPeer(t, "acme", "gap")); p.IPv4 != first.IPv4.Next() {
		t.Errorf("after the top, got %v, want %v", p.IPv4, first.IPv4.Next())
	}
}

func TestAllocAboveTheNodesBlock(t *testing.T) {
	// A database from before the nodes' block was kept out of the pool, with a peer and the
	// high-water mark inside it (no installation came near: it takes 4 million peers):
	// new peers get the lowest free addresses below the block, never one inside it, and
	// db check names the peer.
	ctx := context.Background()
	s, opts := openTest(t)
	mustTenant(t, s, "acme")
	first := mustPeer(t, s, newPeer(t, "acme", "first"))
	inBlock := netip.MustParseAddr("100.127.0.2")
	v4 := int64(0x647F0002)
	if _, err := s.db.ExecContext(ctx, "UPDATE peers SET ipv4 = ?, ipv6 = ? WHERE id = ?", v4, s.ipv6For(uint32(v4)).AsSlice(), first.ID); err != nil {
		t.Fatal(err)
	}
	if err := putSetting(ctx, s.db, settingIPv4HighWater, fmt.Sprint(v4), 1); err != nil {
		t.Fatal(err)
	}
	if p := mustPeer(t, s, newPeer(t, "acme", "next")); p.IPv4 != netip.MustParseAddr("100.64.0.2") {
		t.Errorf("the next peer got %v, want 100.64.0.2, the lowest free address below the block", p.IPv4)
	}
	r, err := Check(ctx, opts.Path, "")
	if err != nil {
		t.Fatal(err)
	}
	want := "peer first of tenant acme: its address " + inBlock.String() + " lies in 100.127.0.0/16"
	if !slices.ContainsFunc(r.Problems, func(p string) bool { return strings.HasPrefix(p, want) }) {
		t.Errorf("db check problems %q, want one starting %q", r.Problems, want)
	}
}

func TestAllocNoReuseBeforeTop(t *testing.T) {
	// Removing a peer frees its address, but new peers get never-used addresses first, even
	// when the removed one was the highest.
	ctx := context.Background()
	s, opts := openTest(t)
	mustTenant(t, s, "acme")
	addPeers(t, s, "p", 3) // .2 .3 .4
	for _, name := range []string{"p1", "p2"} {
		if _, err := s.RemovePeer(ctx, "acme", name); err != nil {
			t.Fatal(err)
		}
	}
	if p := mustPeer(t, s, newPeer(t, "acme", "q")); p.IPv4 != netip.MustParseAddr("100.64.0.5") {
		t.Errorf("got %v, want 100.64.0.5 (.3 and .4 were freed but are not reused yet)", p.IPv4)
	}
	// The high-water mark survives a restart.
	s.Close()
	s = openOpts(t, opts)
	if _, err := s.RemovePeer(ctx, "acme", "q"); err != nil {
		t.Fatal(err)
	}
	if p := mustPeer(t, s, newPeer(t, "acme", "r")); p.IPv4 != netip.MustParseAddr("100.64.0.6") {
		t.Errorf("after reopen got %v, want 100.64.0.6", p.IPv4)
	}
}

func TestAllocGapReuseAndExhaustion(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	mustTenant(t, s, "acme")
	s.v4Last = s.v4First + 4 // a pool of 5: 100.64.0.2 - 100.64.0.6
	got := addPeers(t, s, "p", 5)
	if want := "[100.64.0.2 100.64.0.3 100.64.0.4 100.64.0.5 100.64.0.6]"; fmt.Sprint(got) != want {
		t.Fatalf("addresses %v, want %s", got, want)
	}

	before := counts(t, s)
	_, err := s.AddPeer(ctx, newPeer(t, "acme", "extra"))
	wantErr(t, err, ErrExhausted, "no overlay address is free: all 5 IPv4 addresses of 100.64.0.0/10 are assigned")
	if after := counts(t, s); after != before {
		t.Errorf("exhausted AddPeer wrote rows: %s → %s", before, after)
	}

	// Free .5 and .3: the lowest gap (.3) is used first, then .5, then the pool is full again.
	for _, name := range []string{"p3", "p1"} {
		if _, err := s.RemovePeer(ctx, "acme", name); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"100.64.0.3", "100.64.0.5"} {
		if p := mustPeer(t, s, newPeer(t, "acme", "r"+want)); p.IPv4.String() != want {
			t.Errorf("gap reuse got %v, want %s", p.IPv4, want)
		}
	}
	_, err = s.AddPeer(ctx, newPeer(t, "acme", "extra"))
	wantErr(t, err, ErrExhausted, "remove peers that are no longer used")

	// Freeing the lowest address (no assigned address below it) and the highest both work.
	for _, name := range []string{"p0", "p4"} {
		if _, err := s.RemovePeer(ctx, "acme", name); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"100.64.0.2", "100.64.0.6"} {
		if p := mustPeer(t, s, newPeer(t, "acme", "s"+want)); p.IPv4.String() != want {
			t.Errorf("gap reuse got %v, want %s", p.IPv4, want)
		}
	}
}

func TestAllocNeverHandsOutAssigned(t *testing.T) {
	// Random adds and removes in a small pool, checked against a naive model: every address
	// handed out is free at that moment, and the allocator fails only when the pool is full.
	ctx := context.Background()
	s, _ := openTest(t)
	mustTenant(t, s, "acme")
	const size = 8
	s.v4Last = s.v4First + size - 1
	held := map[netip.Addr]string{} // address → peer name
	seed := uint32(1)
	rnd := func(n int) int { seed = seed*1664525 + 1013904223; return int(seed>>16) % n }
	for i := range 200 {
		if len(held) > 0 && rnd(3) == 0 {
			for a, name := range held {
				if _, err := s.RemovePeer(ctx, "acme", name); err != nil {
					t.Fatal(err)
				}
				delete(held, a)
				break
			}
			continue
		}
		name := fmt.Sprint("n", i)
		p, err := s.AddPeer(ctx, newPeer(t, "acme", name))
		if len(held) == size {
			wantErr(t, err, ErrExhausted, "no overlay address is free")
			continue
		}
		if err != nil {
			t.Fatalf("step %d: %v with %d of %d held", i, err, len(held), size)
		}
		if other, taken := held[p.IPv4]; taken {
			t.Fatalf("step %d: %v handed to %s while %s holds it", i, p.IPv4, name, other)
		}
		if v := p.IPv4.As4(); uint32(v[0])<<24|uint32(v[1])<<16|uint32(v[2])<<8|uint32(v[3]) > s.v4Last {
			t.Fatalf("step %d: %v is outside the pool", i, p.IPv4)
		}
		held[p.IPv4] = name
	}
}
