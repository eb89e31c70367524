package store

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPeerGroups(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	s, _ := openTest(t)
	s.now = clock.Now
	mustTenant(t, s, "acme")

	np := newPeer(t, "acme", "laptop")
	np.Groups = []string{"eng", "all", "eng", "Ops.team_1-x"}
	p := mustPeer(t, s, np)
	if want := []string{"Ops.team_1-x", "all", "eng"}; !slices.Equal(p.Groups, want) {
		t.Fatalf("AddPeer groups = %q, want %q (sorted bytewise, without duplicates)", p.Groups, want)
	}
	for what, get := range map[string]func() (Peer, error){
		"Peer":            func() (Peer, error) { return s.Peer(ctx, "acme", "laptop") },
		"PeerByPublicKey": func() (Peer, error) { return s.PeerByPublicKey(ctx, p.PublicKey) },
		"ListPeers(acme)": func() (Peer, error) { ps, err := s.ListPeers(ctx, "acme"); return ps[0], err },
		"ListPeers()":     func() (Peer, error) { ps, err := s.ListPeers(ctx, ""); return ps[0], err },
	} {
		if got, err := get(); err != nil || !reflect.DeepEqual(got, p) {
			t.Errorf("%s = %+v, %v; want %+v", what, got, err, p)
		}
	}
	// The caller's slice is not kept or reordered.
	if np.Groups[0] != "eng" {
		t.Errorf("AddPeer reordered the caller's slice: %q", np.Groups)
	}

	clock.Advance(time.Minute)
	g0, _ := s.Generation(ctx)
	same, err := s.SetPeerGroups(ctx, "acme", "laptop", []string{"eng", "all", "Ops.team_1-x", "all"})
	if err != nil || !reflect.DeepEqual(same, p) {
		t.Errorf("SetPeerGroups with the same set = %+v, %v; want it unchanged", same, err)
	}
	if g, _ := s.Generation(ctx); g != g0 {
		t.Errorf("SetPeerGroups with the same set advanced the generation %d → %d", g0, g)
	}

	tests := []struct {
		groups  []string
		want    []string
		changed bool
	}{
		{[]string{"sales"}, []string{"sales"}, true},
		{[]string{"b", "a", "B"}, []string{"B", "a", "b"}, true},
		{nil, nil, true},
		{[]string{}, nil, false},
		{[]string{"eng"}, []string{"eng"}, true},
	}
	for _, tt := range tests {
		before, _ := s.Peer(ctx, "acme", "laptop")
		clock.Advance(time.Second)
		got, err := s.SetPeerGroups(ctx, "acme", "laptop", tt.groups)
		if err != nil || !slices.Equal(got.Groups, tt.want) || (got.Groups == nil) != (tt.want == nil) {
			t.Fatalf("SetPeerGroups(%q) = %q, %v; want %q", tt.groups, got.Groups, err, tt.want)
		}
		wantUpdated := before.UpdatedAt
		if tt.changed {
			wantUpdated = clock.Now()
		}
		if !got.UpdatedAt.Equal(wantUpdated) || !got.CreatedAt.Equal(p.CreatedAt) {
			t.Errorf("SetPeerGroups(%q): UpdatedAt %v, CreatedAt %v", tt.groups, got.UpdatedAt, got.CreatedAt)
		}
		if stored, err := s.Peer(ctx, "acme", "laptop"); err != nil || !reflect.DeepEqual(stored, got) {
			t.Errorf("stored %+v, %v; returned %+v", stored, err, got)
		}
	}
}

func TestPeerGroupsRefused(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	mustTenant(t, s, "acme")
	mustPeer(t, s, newPeer(t, "acme", "laptop"))
	var many []string
	for i := range MaxPeerGroups + 1 {
		many = append(many, fmt.Sprint("g", i))
	}
	tests := []struct {
		name   string
		groups []string
		kind   error
		msg    string
	}{
		{"empty name", []string{"eng", ""}, ErrInvalid,
			`group name "" is invalid: it is empty; use 1-64 letters, digits, '.', '_' and '-', starting with a letter or digit`},
		{"space", []string{"dev ops"}, ErrInvalid, `group name "dev ops" is invalid: ' ' at position 4 is not allowed`},
		{"leading hyphen", []string{"-eng"}, ErrInvalid, `group name "-eng" is invalid: it starts with '-'`},
		{"colon", []string{"group:eng"}, ErrInvalid, `group name "group:eng" is invalid: ':' at position 6 is not allowed`},
		{"too long", []string{strings.Repeat("g", 65)}, ErrInvalid, `it has 65 characters, at most 64 are allowed`},
		{"too many", many, ErrInvalid,
			`peer "laptop" would be in 33 groups, at most 32 are allowed: drop some, or merge groups that are used alike`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.SetPeerGroups(ctx, "acme", "laptop", tt.groups)
			wantErr(t, err, tt.kind, tt.msg)
			np := newPeer(t, "acme", "new")
			np.Groups = tt.groups
			_, err = s.AddPeer(ctx, np)
			wantErr(t, err, tt.kind, strings.ReplaceAll(tt.msg, `"laptop"`, `"new"`))
		})
	}
	if p, err := s.Peer(ctx, "acme", "laptop"); err != nil || p.Groups != nil {
		t.Errorf("refused calls changed the groups: %q, %v", p.Groups, err)
	}
	// 32 distinct groups are fine, and duplicates do not count.
	p, err := s.SetPeerGroups(ctx, "acme", "laptop", append(many[:MaxPeerGroups:MaxPeerGroups], many[0]))
	if err != nil || len(p.Groups) != MaxPeerGroups {
		t.Errorf("SetPeerGroups with %d groups = %d groups, %v", MaxPeerGroups, len(p.Groups), err)
	}

	_, err = s.SetPeerGroups(ctx, "acme", "ghost", []string{"eng"})
	wantErr(t, err, ErrNotFound, `peer "ghost" not found in tenant "acme"`)
	_, err = s.SetPeerGroups(ctx, "nope", "laptop", []string{"eng"})
	wantErr(t, err, ErrNotFound, `tenant "nope" not found`)
}

func TestListPeersGroupsAndSites(t *testing.T) {
	// Many peers in several tenants, listed all at once and per tenant, carry exactly their
	// own groups and sites: the one extra query is matched to the right peers.
	ctx := context.Background()
	s, _ := openTest(t)
	want := map[string]Peer{}
	for ti, tn := range []string{"zeta", "acme"} {
		mustTenant(t, s, tn)
		for i := range 12 {
			np := newPeer(t, tn, fmt.Sprintf("p%02d", 11-i)) // added in reverse name order
			for g := range i % 4 {
				np.Groups = append(np.Groups, fmt.Sprint("g", g))
			}
			if i%5 == 0 {
				np.Site = fmt.Sprint("site", i)
				np.SitePrefixes = []netip.Prefix{pfx(fmt.Sprintf("10.%d.%d.0/24", ti, i)), pfx(fmt.Sprintf("fd%02x:%x::/32", ti, i))}
			}
			p := mustPeer(t, s, np)
			want[tn+"/"+p.Name] = p
		}
	}
	for _, tenant := range []string{"", "acme", "zeta"} {
		ps, err := s.ListPeers(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if w := want[p.TenantName+"/"+p.Name]; !reflect.DeepEqual(p, w) {
				t.Errorf("ListPeers(%q) listed %+v\nadded %+v", tenant, p, w)
			}
		}
	}
}
