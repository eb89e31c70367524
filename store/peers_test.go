package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func mustTenant(t testing.TB, s *Store, name string) Tenant {
	t.Helper()
	tn, err := s.AddTenant(context.Background(), name)
	if err != nil {
		t.Fatalf("AddTenant(%q): %v", name, err)
	}
	return tn
}

func mustKey(t testing.TB) Key {
	t.Helper()
	k, err := GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustPeer(t testing.TB, s *Store, np NewPeer) Peer {
	t.Helper()
	p, err := s.AddPeer(context.Background(), np)
	if err != nil {
		t.Fatalf("AddPeer(%s/%s): %v", np.TenantName, np.Name, err)
	}
	return p
}

// newPeer returns a NewPeer with a fresh server-generated key.
func newPeer(t testing.TB, tenant, name string) NewPeer {
	k := mustKey(t)
	return NewPeer{TenantName: tenant, Name: name, PrivateKey: &k}
}

// counts returns the number of rows in tenants and peers, to prove a failed call wrote nothing.
func counts(t testing.TB, s *Store) string {
	t.Helper()
	var tenants, peers int
	ctx := context.Background()
	if err := s.db.QueryRowContext(ctx, "SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM peers)").Scan(&tenants, &peers); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d tenants, %d peers", tenants, peers)
}

func TestTenants(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	s, _ := openTest(t)
	s.now = clock.Now

	if ts, err := s.ListTenants(ctx); err != nil || len(ts) != 0 {
		t.Fatalf("ListTenants on empty store = %v, %v", ts, err)
	}
	for _, name := range []string{"zeta", "acme", "m-corp"} {
		tn := mustTenant(t, s, name)
		if tn.ID == 0 || tn.Name != name || !tn.CreatedAt.Equal(clock.Now()) {
			t.Errorf("AddTenant(%q) = %+v", name, tn)
		}
		clock.Advance(time.Second)
	}
	ts, err := s.ListTenants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tn := range ts {
		names = append(names, tn.Name)
		if got, err := s.Tenant(ctx, tn.Name); err != nil || got != tn {
			t.Errorf("Tenant(%q) = %+v, %v; ListTenants said %+v", tn.Name, got, err, tn)
		}
	}
	if want := []string{"acme", "m-corp", "zeta"}; !slices.Equal(names, want) {
		t.Errorf("ListTenants names = %v, want %v", names, want)
	}

	before := counts(t, s)
	_, err = s.AddTenant(ctx, "acme")
	wantErr(t, err, ErrExists, `tenant "acme" already exists`)
	_, err = s.AddTenant(ctx, "Ac me")
	wantErr(t, err, ErrInvalid, `tenant name "Ac me" is invalid`)
	if after := counts(t, s); after != before {
		t.Errorf("failed AddTenant wrote rows: %s → %s", before, after)
	}

	_, err = s.Tenant(ctx, "nope")
	wantErr(t, err, ErrNotFound, `tenant "nope" not found: list tenants with 'popgate tenant list'`)
	wantErr(t, s.RemoveTenant(ctx, "nope"), ErrNotFound, `tenant "nope" not found`)
	_, err = s.CountPeers(ctx, "nope")
	wantErr(t, err, ErrNotFound, `tenant "nope" not found`)
	_, err = s.ListPeers(ctx, "nope")
	wantErr(t, err, ErrNotFound, `tenant "nope" not found`)

	for i := range 3 {
		mustPeer(t, s, newPeer(t, "acme", fmt.Sprint("dev", i)))
	}
	wantErr(t, s.RemoveTenant(ctx, "acme"), ErrInvalid, "tenant acme still has 3 peers: remove them first")
	if _, err := s.RemovePeer(ctx, "acme", "dev0"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemovePeer(ctx, "acme", "dev1"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.RemoveTenant(ctx, "acme"), ErrInvalid, "tenant acme still has 1 peer: remove it first")
	if n, err := s.CountPeers(ctx, "acme"); err != nil || n != 1 {
		t.Errorf("CountPeers(acme) = %d, %v", n, err)
	}
	if _, err := s.RemovePeer(ctx, "acme", "dev2"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveTenant(ctx, "acme"); err != nil {
		t.Fatalf("RemoveTenant of an empty tenant: %v", err)
	}
	if _, err := s.Tenant(ctx, "acme"); !errors.Is(err, ErrNotFound) {
		t.Errorf("tenant still there after RemoveTenant: %v", err)
	}
	// A new tenant of the same name gets a new ID: IDs are never reused.
	if tn := mustTenant(t, s, "acme"); tn.ID <= ts[len(ts)-1].ID {
		t.Errorf("re-created tenant reuses ID %d", tn.ID)
	}
}

func TestAddPeer(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	s, _ := openTest(t)
	s.now = clock.Now
	acme := mustTenant(t, s, "acme")
	_, ula := s.OverlayPrefixes()

	priv := mustKey(t)
	p := mustPeer(t, s, NewPeer{TenantName: "acme", Name: "laptop", PrivateKey: &priv})
	want := Peer{
		ID: p.ID, TenantID: acme.ID, TenantName: "acme", Name: "laptop",
		PublicKey: priv.PublicKey(), HasPrivateKey: true,
		IPv4: netip.MustParseAddr("100.64.0.2"), IPv6: netip.AddrFrom16(withLow32(ula, 0x64400002)),
		Enabled: true, CreatedAt: clock.Now(), UpdatedAt: clock.Now(),
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("AddPeer = %+v\nwant %+v", p, want)
	}
	if got, err := s.Peer(ctx, "acme", "laptop"); err != nil || !reflect.DeepEqual(got, p) {
		t.Errorf("Peer = %+v, %v", got, err)
	}
	if got, err := s.PeerByPublicKey(ctx, priv.PublicKey()); err != nil || !reflect.DeepEqual(got, p) {
		t.Errorf("PeerByPublicKey = %+v, %v", got, err)
	}
	if k, err := s.PeerPrivateKey(ctx, "acme", "laptop"); err != nil || k != priv {
		t.Errorf("PeerPrivateKey = %v, %v", k, err)
	}
	if !strings.HasSuffix(p.IPv6.String(), "::6440:2") {
		t.Errorf("IPv6 %v does not end in the IPv4 address", p.IPv6)
	}

	// A peer that brought its own public key.
	phonePub := mustKey(t).PublicKey()
	phone := mustPeer(t, s, NewPeer{TenantName: "acme", Name: "phone", PublicKey: &phonePub})
	if phone.HasPrivateKey || phone.PublicKey != phonePub || phone.IPv4 != netip.MustParseAddr("100.64.0.3") {
		t.Errorf("AddPeer(public key) = %+v", phone)
	}
	_, err := s.PeerPrivateKey(ctx, "acme", "phone")
	wantErr(t, err, ErrNoPrivateKey, `peer "phone" in tenant "acme" was created from a public key its user brought`)

	// The same name in another tenant is fine.
	mustTenant(t, s, "globex")
	other := mustPeer(t, s, newPeer(t, "globex", "laptop"))
	if other.TenantName != "globex" || other.IPv4 == p.IPv4 {
		t.Errorf("peer in second tenant = %+v", other)
	}
}

func withLow32(p netip.Prefix, v uint32) [16]byte {
	b := p.Addr().As16()
	b[12], b[13], b[14], b[15] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	return b
}

func TestAddPeerRefused(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	mustTenant(t, s, "acme")
	mustTenant(t, s, "globex")
	taken := mustKey(t)
	mustPeer(t, s, NewPeer{TenantName: "globex", Name: "x", PrivateKey: &taken})
	takenPub := taken.PublicKey()
	laptopPub := mustPeer(t, s, newPeer(t, "acme", "laptop")).PublicKey
	fresh := mustKey(t)
	freshPub := fresh.PublicKey()
	var zero Key
	lowOrder, _ := ParseKey("4Ot6fDtBuK4WVuP68Z/EatoJjeucMrH9hmIFFl9JuAA=") // order-8 point
	nodePub := s.NodePublicKey()

	tests := []struct {
		name string
		np   NewPeer
		kind error
		msg  string
	}{
		{"duplicate name", NewPeer{TenantName: "acme", Name: "laptop", PrivateKey: &fresh}, ErrExists,
			`peer "laptop" already exists in tenant "acme": choose another name or remove it first`},
		// Another tenant's key: the message names neither that tenant nor its peer.
		{"public key of another tenant", NewPeer{TenantName: "acme", Name: "new", PublicKey: &takenPub}, ErrExists,
			`public key ` + takenPub.String() + ` is already in use: each device needs a key pair of its own`},
		{"private key of another tenant", NewPeer{TenantName: "acme", Name: "new", PrivateKey: &taken}, ErrExists,
			`is already in use: each device needs a key pair of its own`},
		// The tenant's own key: naming its own peer tells nothing new.
		{"public key of the same tenant", NewPeer{TenantName: "acme", Name: "new", PublicKey: &laptopPub}, ErrExists,
			`public key ` + laptopPub.String() + ` is already used by peer "laptop" of tenant "acme"`},
		{"unknown tenant", NewPeer{TenantName: "nope", Name: "new", PrivateKey: &fresh}, ErrNotFound,
			`tenant "nope" not found: list tenants with 'popgate tenant list'`},
		{"bad tenant name", NewPeer{TenantName: "No pe", Name: "new", PrivateKey: &fresh}, ErrInvalid, `tenant name "No pe" is invalid`},
		{"bad peer name", NewPeer{TenantName: "acme", Name: "my laptop", PrivateKey: &fresh}, ErrInvalid, `peer name "my laptop" is invalid`},
		{"no key", NewPeer{TenantName: "acme", Name: "new"}, ErrInvalid, "exactly one of"},
		{"both keys", NewPeer{TenantName: "acme", Name: "new", PrivateKey: &fresh, PublicKey: &freshPub}, ErrInvalid, "exactly one of"},
		{"zero private key", NewPeer{TenantName: "acme", Name: "new", PrivateKey: &zero}, ErrInvalid, "all zeros"},
		{"zero public key", NewPeer{TenantName: "acme", Name: "new", PublicKey: &zero}, ErrInvalid, "low-order point"},
		{"low-order public key", NewPeer{TenantName: "acme", Name: "new", PublicKey: &lowOrder}, ErrInvalid, "low-order point"},
		{"node's own key", NewPeer{TenantName: "acme", Name: "new", PublicKey: &nodePub}, ErrInvalid, "this node's own key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := counts(t, s)
			_, err := s.AddPeer(ctx, tt.np)
			wantErr(t, err, tt.kind, tt.msg)
			if tt.np.TenantName == "acme" && (strings.Contains(err.Error(), "globex") || strings.Contains(err.Error(), `"x"`)) {
				t.Errorf("a refusal for tenant acme names tenant globex or its peer: %v", err)
			}
			if after := counts(t, s); after != before {
				t.Errorf("failed AddPeer wrote rows: %s → %s", before, after)
			}
		})
	}
	// The refused attempts did not use up addresses.
	if p := mustPeer(t, s, newPeer(t, "acme", "next")); p.IPv4 != netip.MustParseAddr("100.64.0.4") {
		t.Errorf("next peer got %v, want 100.64.0.4", p.IPv4)
	}
}

func TestPeerNotFound(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	mustTenant(t, s, "acme")
	check := func(what string, err error) {
		t.Helper()
		wantErr(t, err, ErrNotFound, `peer "ghost" not found in tenant "acme"`)
	}
	_, err := s.Peer(ctx, "acme", "ghost")
	check("Peer", err)
	_, err = s.PeerPrivateKey(ctx, "acme", "ghost")
	check("PeerPrivateKey", err)
	_, err = s.SetPeerEnabled(ctx, "acme", "ghost", false)
	check("SetPeerEnabled", err)
	_, err = s.RemovePeer(ctx, "acme", "ghost")
	check("RemovePeer", err)

	_, err = s.Peer(ctx, "nope", "ghost")
	wantErr(t, err, ErrNotFound, `tenant "nope" not found`)
	_, err = s.PeerPrivateKey(ctx, "nope", "ghost")
	wantErr(t, err, ErrNotFound, `tenant "nope" not found`)
	_, err = s.PeerByPublicKey(ctx, mustKey(t))
	wantErr(t, err, ErrNotFound, "no peer has public key")
	if ps, err := s.ListPeers(ctx, "acme"); err != nil || ps == nil || len(ps) != 0 {
		t.Errorf("ListPeers of an empty tenant = %#v, %v; want an empty list", ps, err)
	}
}

func TestSetPeerEnabled(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	s, _ := openTest(t)
	s.now = clock.Now
	mustTenant(t, s, "acme")
	p := mustPeer(t, s, newPeer(t, "acme", "laptop"))
	clock.Advance(time.Minute)

	off, err := s.SetPeerEnabled(ctx, "acme", "laptop", false)
	if err != nil || off.Enabled || !off.UpdatedAt.Equal(clock.Now()) || !off.CreatedAt.Equal(p.CreatedAt) {
		t.Fatalf("SetPeerEnabled(false) = %+v, %v", off, err)
	}
	if got, _ := s.Peer(ctx, "acme", "laptop"); !reflect.DeepEqual(got, off) {
		t.Errorf("stored %+v, returned %+v", got, off)
	}
	clock.Advance(time.Minute)
	again, err := s.SetPeerEnabled(ctx, "acme", "laptop", false)
	if err != nil || !reflect.DeepEqual(again, off) {
		t.Errorf("SetPeerEnabled with no change = %+v, %v; want %+v unchanged", again, err, off)
	}
	on, err := s.SetPeerEnabled(ctx, "acme", "laptop", true)
	if err != nil || !on.Enabled || !on.UpdatedAt.Equal(clock.Now()) {
		t.Errorf("SetPeerEnabled(true) = %+v, %v", on, err)
	}
}

func TestRemovePeer(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	mustTenant(t, s, "acme")
	p := mustPeer(t, s, newPeer(t, "acme", "laptop"))
	got, err := s.RemovePeer(ctx, "acme", "laptop")
	if err != nil || !reflect.DeepEqual(got, p) {
		t.Fatalf("RemovePeer = %+v, %v; want %+v", got, err, p)
	}
	if _, err := s.Peer(ctx, "acme", "laptop"); !errors.Is(err, ErrNotFound) {
		t.Errorf("peer still there: %v", err)
	}
	if _, err := s.PeerByPublicKey(ctx, p.PublicKey); !errors.Is(err, ErrNotFound) {
		t.Errorf("public key still there: %v", err)
	}
	// The name and the key may be used again; the ID is not.
	again := mustPeer(t, s, NewPeer{TenantName: "acme", Name: "laptop", PublicKey: &p.PublicKey})
	if again.ID == p.ID {
		t.Errorf("peer ID %d reused", p.ID)
	}
}

func TestListPeers(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	for _, tn := range []string{"zeta", "acme", "beta"} {
		mustTenant(t, s, tn)
	}
	added := map[string]Peer{}
	for _, tp := range [][2]string{{"zeta", "b"}, {"acme", "z"}, {"acme", "A"}, {"zeta", "a"}, {"acme", "m"}, {"acme", "a"}} {
		p := mustPeer(t, s, newPeer(t, tp[0], tp[1]))
		added[tp[0]+"/"+tp[1]] = p
	}
	names := func(ps []Peer) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.TenantName+"/"+p.Name)
			if !reflect.DeepEqual(p, added[p.TenantName+"/"+p.Name]) {
				t.Errorf("listed %+v, added %+v", p, added[p.TenantName+"/"+p.Name])
			}
		}
		return out
	}
	all, err := s.ListPeers(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	// Names sort bytewise (BINARY collation): upper case before lower case.
	if got, want := names(all), []string{"acme/A", "acme/a", "acme/m", "acme/z", "zeta/a", "zeta/b"}; !slices.Equal(got, want) {
		t.Errorf("ListPeers(\"\") = %v, want %v", got, want)
	}
	zeta, err := s.ListPeers(ctx, "zeta")
	if got, want := names(zeta), []string{"zeta/a", "zeta/b"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("ListPeers(zeta) = %v, %v; want %v", got, err, want)
	}
	if n, err := s.CountPeers(ctx, ""); err != nil || n != 6 {
		t.Errorf("CountPeers(\"\") = %d, %v", n, err)
	}
}

func TestQueryPlans(t *testing.T) {
	// Listing, lookups and the allocator use indexes or one sequential scan, never a scan
	// per row or a temporary sort.
	s, _ := openTest(t)
	tests := []struct{ query, want string }{
		{peerSelect, "SCAN p\nSEARCH t USING INTEGER PRIMARY KEY (rowid=?)\n"},
		{peerSelect + "WHERE t.name = 'acme' ORDER BY p.name",
			"SEARCH t USING COVERING INDEX sqlite_autoindex_tenants_1 (name=?)\nSEARCH p USING INDEX sqlite_autoindex_peers_4 (tenant_id=?)\n"},
		{peerSelect + "WHERE t.name = 'acme' AND p.name = 'x'",
			"SEARCH t USING COVERING INDEX sqlite_autoindex_tenants_1 (name=?)\nSEARCH p USING INDEX sqlite_autoindex_peers_4 (tenant_id=? AND name=?)\n"},
		{peerSelect + "WHERE p.public_key = x'00'",
			"SEARCH p USING INDEX sqlite_autoindex_peers_1 (public_key=?)\nSEARCH t USING INTEGER PRIMARY KEY (rowid=?)\n"},
		{"SELECT max(ipv4) FROM peers", "SEARCH peers USING COVERING INDEX sqlite_autoindex_peers_2\n"},
		// Groups and sites of all peers, one tenant's, one peer's: each table once, by key.
		{extrasAll, "COMPOUND QUERY\nLEFT-MOST SUBQUERY\nSCAN g\nUNION ALL\nSCAN s\n" +
			"SEARCH sp USING PRIMARY KEY (tenant_id=? AND site=?) LEFT-JOIN\n"},
		{extrasTenant, "COMPOUND QUERY\nLEFT-MOST SUBQUERY\n" +
			"SEARCH p USING COVERING INDEX sqlite_autoindex_peers_4 (tenant_id=?)\nSEARCH g USING PRIMARY KEY (peer_id=?)\n" +
			"UNION ALL\nSEARCH s USING COVERING INDEX sqlite_autoindex_sites_1 (tenant_id=?)\n" +
			"SEARCH sp USING PRIMARY KEY (tenant_id=? AND site=?) LEFT-JOIN\n"},
		{extrasPeer, "COMPOUND QUERY\nLEFT-MOST SUBQUERY\nSEARCH g USING PRIMARY KEY (peer_id=?)\n" +
			"UNION ALL\nSEARCH s USING INTEGER PRIMARY KEY (rowid=?)\n" +
			"SEARCH sp USING PRIMARY KEY (tenant_id=? AND site=?) LEFT-JOIN\n"},
		{"SELECT addr, bits FROM routes WHERE tenant_id = 1 AND via_site = 'x'",
			"SEARCH routes USING COVERING INDEX routes_site (tenant_id=? AND via_site=?)\n"},
		{routeSelect + "WHERE r.tenant_id = 1 AND r.addr = x'00' AND r.bits = 0 ",
			"SEARCH r USING PRIMARY KEY (tenant_id=? AND addr=? AND bits=?)\nSEARCH t USING INTEGER PRIMARY KEY (rowid=?)\n"},
		{strings.Replace(strings.Replace(gapQuery, "?", "1", 1), "?", "5", 1),
			"SEARCH p USING COVERING INDEX sqlite_autoindex_peers_2 (ipv4>? AND ipv4<?)\nCORRELATED SCALAR SUBQUERY 1\nSEARCH n USING COVERING INDEX sqlite_autoindex_peers_2 (ipv4=?)\n"},
	}
	for _, tt := range tests {
		if got := queryPlan(t, s.db, tt.query, 1, 1); got != tt.want {
			t.Errorf("query plan of\n%s\n= %s\nwant %s", tt.query, got, tt.want)
		}
	}
}

func queryPlan(t testing.TB, db *sql.DB, q string, args ...any) string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		b.WriteString(detail + "\n")
	}
	return b.String()
}

func TestCiphertextBoundToRow(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	mustTenant(t, s, "acme")
	mustPeer(t, s, newPeer(t, "acme", "a"))
	mustPeer(t, s, newPeer(t, "acme", "b"))
	if _, err := s.PeerPrivateKey(ctx, "acme", "a"); err != nil {
		t.Fatal(err)
	}
	// Swap the two sealed keys with raw SQL: each still has the right format, neither opens.
	var sealedA, sealedB []byte
	if err := s.db.QueryRowContext(ctx, `SELECT (SELECT private_key_enc FROM peers WHERE name = 'a'),
		(SELECT private_key_enc FROM peers WHERE name = 'b')`).Scan(&sealedA, &sealedB); err != nil {
		t.Fatal(err)
	}
	for name, sealed := range map[string][]byte{"a": sealedB, "b": sealedA} {
		if _, err := s.db.ExecContext(ctx, "UPDATE peers SET private_key_enc = ? WHERE name = ?", sealed, name); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"a", "b"} {
		_, err := s.PeerPrivateKey(ctx, "acme", name)
		wantErr(t, err, ErrInvalid, fmt.Sprintf("the private key of peer %q in tenant \"acme\" cannot be decrypted", name))
	}
	// Nor does a peer's sealed key open as the node key.
	var sealed []byte
	if err := s.db.QueryRowContext(ctx, "SELECT private_key_enc FROM peers WHERE name = 'a'").Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if _, err := s.openKey(sealed, []byte(adNode)); err == nil {
		t.Error("a peer's sealed key opened as the node key")
	}
	// And a flipped bit is caught.
	sealed[len(sealed)-1] ^= 1
	if _, err := s.openKey(sealed, peerAD(Key{})); err == nil {
		t.Error("tampered sealed key opened")
	}
}

func TestConcurrentAddPeer(t *testing.T) {
	// Concurrent writers get distinct addresses and all succeed.
	ctx := context.Background()
	s, _ := openTest(t)
	mustTenant(t, s, "acme")
	const n = 20
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := s.AddPeer(ctx, newPeer(t, "acme", fmt.Sprint("dev", i)))
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	ps, err := s.ListPeers(ctx, "acme")
	if err != nil || len(ps) != n {
		t.Fatalf("ListPeers = %d peers, %v", len(ps), err)
	}
	seen := map[netip.Addr]bool{}
	for _, p := range ps {
		if seen[p.IPv4] {
			t.Errorf("address %v handed out twice", p.IPv4)
		}
		seen[p.IPv4] = true
	}
}

func TestRotatePeerKey(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	mustTenant(t, s, "acme")
	mustTenant(t, s, "globex")
	hank := mustPeer(t, s, newPeer(t, "globex", "hank"))
	phone := mustPeer(t, s, newPeer(t, "acme", "phone"))
	np := newPeer(t, "acme", "laptop")
	np.Groups, np.Site, np.SitePrefixes = []string{"eng"}, "office", []netip.Prefix{netip.MustParsePrefix("10.10.0.0/24")}
	laptop := mustPeer(t, s, np)
	now := time.Now()
	_, token, err := s.CreateDownloadLink(ctx, "acme", "laptop", "root", now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}

	// A key pair the server generates: the old public key is gone, the new private key is
	// kept, everything else stays.
	k1 := mustKey(t)
	got, err := s.RotatePeerKey(ctx, "acme", "laptop", &k1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.PublicKey != k1.PublicKey() || !got.HasPrivateKey {
		t.Errorf("after rotation: public key %s, server key %v; want %s, true", got.PublicKey, got.HasPrivateKey, k1.PublicKey())
	}
	stored, err := s.Peer(ctx, "acme", "laptop")
	if err != nil {
		t.Fatal(err)
	}
	want := laptop
	want.PublicKey, want.UpdatedAt = k1.PublicKey(), stored.UpdatedAt
	if !reflect.DeepEqual(stored, want) || !reflect.DeepEqual(stored, got) {
		t.Errorf("stored after rotation:\n%+v\nwant\n%+v\nreturned\n%+v", stored, want, got)
	}
	if priv, err := s.PeerPrivateKey(ctx, "acme", "laptop"); err != nil || priv != k1 {
		t.Errorf("PeerPrivateKey = %v, %v; want the new key", priv, err)
	}
	if _, err := s.PeerByPublicKey(ctx, laptop.PublicKey); !errors.Is(err, ErrNotFound) {
		t.Errorf("the old public key still finds a peer: %v", err)
	}
	if _, err := s.DownloadLinkByToken(ctx, token, now.Add(time.Minute)); !errors.Is(err, ErrNotFound) {
		t.Errorf("a download link made before the rotation still works: %v", err)
	}

	// A public key the user brings: the server keeps no private key from then on.
	userKey := mustKey(t)
	userPub := userKey.PublicKey()
	if got, err = s.RotatePeerKey(ctx, "acme", "laptop", nil, &userPub); err != nil {
		t.Fatal(err)
	}
	if got.PublicKey != userPub || got.HasPrivateKey {
		t.Errorf("after rotation to a user key: %s, server key %v", got.PublicKey, got.HasPrivateKey)
	}
	if _, err := s.PeerPrivateKey(ctx, "acme", "laptop"); !errors.Is(err, ErrNoPrivateKey) {
		t.Errorf("PeerPrivateKey after rotation to a user key: %v, want ErrNoPrivateKey", err)
	}

	fresh := mustKey(t)
	freshPub := fresh.PublicKey()
	nodePub := s.NodePublicKey()
	var zero Key
	for _, tc := range []struct {
		name         string
		tenant, peer string
		priv, pub    *Key
		kind         error
		msg          string
	}{
		{"the current key", "acme", "laptop", nil, &userPub, ErrInvalid, "is the current key of peer \"laptop\""},
		{"key of another tenant", "acme", "laptop", nil, &hank.PublicKey, ErrExists,
			"public key " + hank.PublicKey.String() + " is already in use: each device needs a key pair of its own"},
		{"key of the same tenant", "acme", "laptop", nil, &phone.PublicKey, ErrExists, `already used by peer "phone" of tenant "acme"`},
		{"node's own key", "acme", "laptop", nil, &nodePub, ErrInvalid, "this node's own key"},
		{"zero key", "acme", "laptop", nil, &zero, ErrInvalid, "low-order point"},
		{"no key", "acme", "laptop", nil, nil, ErrInvalid, "exactly one of"},
		{"both keys", "acme", "laptop", &fresh, &freshPub, ErrInvalid, "exactly one of"},
		{"unknown peer", "acme", "tablet", &fresh, nil, ErrNotFound, `peer "tablet" not found in tenant "acme"`},
		{"unknown tenant", "nope", "laptop", &fresh, nil, ErrNotFound, `tenant "nope" not found`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := s.ListPeers(ctx, "")
			_, err := s.RotatePeerKey(ctx, tc.tenant, tc.peer, tc.priv, tc.pub)
			wantErr(t, err, tc.kind, tc.msg)
			if strings.Contains(err.Error(), "globex") || strings.Contains(err.Error(), "hank") {
				t.Errorf("a refusal for tenant acme names tenant globex or its peer: %v", err)
			}
			if after, _ := s.ListPeers(ctx, ""); !reflect.DeepEqual(before, after) {
				t.Errorf("a refused rotation changed the peers")
			}
		})
	}
}
