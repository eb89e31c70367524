package gateway

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/gateway/resolver"
)

// fakeBlobs hands out contents by hash; a content is missing until added, and each one's
// calls are counted.
type fakeBlobs struct {
	mu    sync.Mutex
	blobs map[[32]byte][]byte
	calls map[[32]byte]int
}

func (f *fakeBlobs) add(body string) plane.Digest {
	f.mu.Lock()
	defer f.mu.Unlock()
	sum := sha256.Sum256([]byte(body))
	f.blobs[sum] = []byte(body)
	return sum
}

func (f *fakeBlobs) blob(_ context.Context, sum [32]byte) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[sum]++
	b, ok := f.blobs[sum]
	if !ok {
		return nil, errors.New("not here")
	}
	return b, nil
}

// rcode asks r for name as tenant; nothing answers upstream, so a name not blocked is
// SERVFAIL.
func rcode(t *testing.T, r *resolver.Resolver, tenant int64, name string) string {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	b, _ := q.Pack()
	a := r.Query(tenant, netip.MustParseAddr("100.64.0.2"), b, func() func([]byte) { return func([]byte) {} })
	m := new(dns.Msg)
	if err := m.Unpack(a); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return dns.RcodeToString[m.Rcode]
}

// TestBlocklistsLoader: the tenants' lists reach the resolver as their contents load, one
// copy of a content for every tenant that lists it; a content that is not there yet is
// tried again; contents no tenant lists are dropped.
func TestBlocklistsLoader(t *testing.T) {
	r, err := resolver.New(resolver.Config{Overlay: plane.Overlay{V4: netip.MustParsePrefix("100.64.0.0/10"), V6: netip.MustParsePrefix("fd00:1::/48")}}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f := &fakeBlobs{blobs: map[[32]byte][]byte{}, calls: map[[32]byte]int{}}
	ads := f.add("ads.example.com\n")
	late := plane.Digest(sha256.Sum256([]byte("late.example.com\n")))
	b := newBlocklists(f.blob, r, testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.run(ctx) }()
	defer func() { cancel(); <-done }()

	tenants := []plane.Tenant{
		{ID: 1, Name: "acme", DNS: plane.TenantDNS{Blocklists: []plane.BlocklistRef{{Name: "ads", SHA256: ads, Names: 1}, {Name: "late", SHA256: late, Names: 1}}}},
		{ID: 2, Name: "globex", DNS: plane.TenantDNS{Blocklists: []plane.BlocklistRef{{Name: "same", SHA256: ads, Names: 1}}}},
		{ID: 3, Name: "initech"},
	}
	b.set(tenants)
	waitFor(t, "ads.example.com to be blocked for acme and globex", func() bool {
		return rcode(t, r, 1, "x.ads.example.com.") == "NXDOMAIN" && rcode(t, r, 2, "ads.example.com.") == "NXDOMAIN"
	})
	if got := rcode(t, r, 3, "ads.example.com."); got != "SERVFAIL" {
		t.Errorf("initech, without lists: %s", got)
	}
	if got := rcode(t, r, 1, "late.example.com."); got != "SERVFAIL" {
		t.Errorf("a list whose content is not here blocks: %s", got)
	}
	b.mu.Lock()
	if len(b.sets) != 1 || b.sets[ads] == nil {
		t.Errorf("%d contents held, want ads's once", len(b.sets))
	}
	b.mu.Unlock()

	// The missing content comes: the retry loads it.
	f.add("late.example.com\n")
	waitFor(t, "late.example.com to be blocked once its content is there", func() bool {
		return rcode(t, r, 1, "late.example.com.") == "NXDOMAIN"
	})
	f.mu.Lock()
	if f.calls[ads] != 1 {
		t.Errorf("ads's content was asked for %d times, want once", f.calls[ads])
	}
	f.mu.Unlock()

	// acme drops its lists: globex still blocks, the content only acme listed goes.
	tenants[0].DNS = plane.TenantDNS{}
	b.set(tenants)
	if got := rcode(t, r, 1, "ads.example.com."); got != "SERVFAIL" {
		t.Errorf("acme after dropping its lists: %s", got)
	}
	if got := rcode(t, r, 2, "ads.example.com."); got != "NXDOMAIN" {
		t.Errorf("globex after acme dropped its lists: %s", got)
	}
	b.mu.Lock()
	if len(b.sets) != 1 || b.sets[late] != nil {
		t.Errorf("%d contents held, want ads's alone", len(b.sets))
	}
	b.mu.Unlock()

	// globex's list gets new content that is not here yet: the list blocks with its old
	// content until the new one loads, then with the new one alone.
	newer := plane.Digest(sha256.Sum256([]byte("newer.example.com\n")))
	tenants[1].DNS.Blocklists = []plane.BlocklistRef{{Name: "same", SHA256: newer, Names: 1}}
	b.set(tenants)
	if got := rcode(t, r, 2, "ads.example.com."); got != "NXDOMAIN" {
		t.Errorf("globex while its list's new content is missing: %s, want the old content in force", got)
	}
	f.add("newer.example.com\n")
	waitFor(t, "newer.example.com to be blocked for globex", func() bool {
		return rcode(t, r, 2, "newer.example.com.") == "NXDOMAIN"
	})
	if got := rcode(t, r, 2, "ads.example.com."); got != "SERVFAIL" {
		t.Errorf("globex once its list's new content loaded: ads.example.com %s", got)
	}
	b.mu.Lock()
	if len(b.sets) != 1 || b.sets[newer] == nil {
		t.Errorf("%d contents held, want the new one alone", len(b.sets))
	}
	b.mu.Unlock()
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
