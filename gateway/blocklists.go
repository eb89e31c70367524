package gateway

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/popgate/popgate/gateway/blocklist"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/gateway/resolver"
)

// Backoff of a blocklist content that failed to load: from the first to the last, doubling.
const (
	blobRetryFirst = 2 * time.Second
	blobRetryLast  = time.Minute
)

// blocklists gives the resolver each tenant's blocklists. The desired state names them by
// the hash of their content (plane.TenantDNS); the contents come from Config.Blobs on a
// goroutine of their own (one from the controller may take a while), each held once as a
// blocklist.Set however many tenants list it, and dropped when no tenant does. A content
// that fails to load is tried again, backing off, while it is wanted. Meanwhile a list whose
// content changed keeps blocking with its previous content, a new list blocks nothing yet,
// and the tenant's other lists are in force. Applies never wait for a content.
type blocklists struct {
	blobs func(ctx context.Context, sum [32]byte) ([]byte, error)
	dns   *resolver.Resolver
	log   *slog.Logger
	// kick wakes the loader: the lists wanted changed.
	kick chan struct{}

	mu sync.Mutex
	// want are each tenant's lists, by tenant ID; sets the contents loaded; inForce the
	// content each of a tenant's lists blocks with now, by tenant and list name. Guarded
	// by mu.
	want    map[int64][]plane.BlocklistRef
	sets    map[plane.Digest]*blocklist.Set
	inForce map[int64]map[string]*blocklist.Set
}

func newBlocklists(blobs func(context.Context, [32]byte) ([]byte, error), dns *resolver.Resolver, log *slog.Logger) *blocklists {
	return &blocklists{blobs: blobs, dns: dns, log: log, kick: make(chan struct{}, 1),
		want: map[int64][]plane.BlocklistRef{}, sets: map[plane.Digest]*blocklist.Set{}, inForce: map[int64]map[string]*blocklist.Set{}}
}

// set takes the tenants' lists of a desired state: the resolver gets at once what is loaded
// of them, and the loader those missing.
func (b *blocklists) set(tenants []plane.Tenant) {
	want := map[int64][]plane.BlocklistRef{}
	for _, t := range tenants {
		if len(t.DNS.Blocklists) > 0 {
			want[t.ID] = t.DNS.Blocklists
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if maps.EqualFunc(want, b.want, slices.Equal) {
		return
	}
	b.want = want
	b.publishLocked()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// wantedLocked reports whether a tenant lists content d. Must hold mu.
func (b *blocklists) wantedLocked(d plane.Digest) bool {
	for _, refs := range b.want {
		if slices.ContainsFunc(refs, func(r plane.BlocklistRef) bool { return r.SHA256 == d }) {
			return true
		}
	}
	return false
}

// publishLocked gives the resolver every tenant's lists: each with its content when loaded,
// else with the content it blocked with so far (a list whose content changed); then drops
// the contents neither wanted nor in force. Must hold mu.
func (b *blocklists) publishLocked() {
	out := make(map[int64]resolver.Blocklist, len(b.want))
	inForce := make(map[int64]map[string]*blocklist.Set, len(b.want))
	held := map[*blocklist.Set]bool{}
	for id, refs := range b.want {
		var u blocklist.Union
		for _, r := range refs {
			s := b.sets[r.SHA256]
			if s == nil {
				s = b.inForce[id][r.Name]
			}
			if s == nil {
				continue
			}
			if inForce[id] == nil {
				inForce[id] = map[string]*blocklist.Set{}
			}
			inForce[id][r.Name], held[s] = s, true
			if !slices.Contains(u, s) {
				u = append(u, s)
			}
		}
		if len(u) > 0 {
			out[id] = u
		}
	}
	b.inForce = inForce
	for d, s := range b.sets {
		if !held[s] && !b.wantedLocked(d) {
			delete(b.sets, d) // no tenant lists it any more: its memory goes
		}
	}
	b.dns.SetBlocklists(out)
}

// missing returns the contents wanted and not loaded.
func (b *blocklists) missing() []plane.Digest {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []plane.Digest
	for _, refs := range b.want {
		for _, r := range refs {
			if b.sets[r.SHA256] == nil && !slices.Contains(out, r.SHA256) {
				out = append(out, r.SHA256)
			}
		}
	}
	return out
}

// run loads the missing contents until ctx ends.
func (b *blocklists) run(ctx context.Context) {
	retry := blobRetryFirst
	for {
		failed := false
		for _, d := range b.missing() {
			if ctx.Err() != nil {
				return
			}
			if !b.load(ctx, d) {
				failed = true
			}
		}
		var wait <-chan time.Time
		if failed {
			wait = time.After(retry)
			retry = min(2*retry, blobRetryLast)
		}
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
			retry = blobRetryFirst
		case <-wait:
		}
	}
}

// load loads content d and publishes it when it is still wanted; false when it failed.
func (b *blocklists) load(ctx context.Context, d plane.Digest) bool {
	start := time.Now()
	body, err := b.blobs(ctx, d)
	if err != nil {
		if ctx.Err() == nil {
			b.log.Warn("a blocklist's content is not here yet: the tenants that list it are served without it meanwhile", "sha256", d.String(), "err", err)
		}
		return false
	}
	s, err := blocklist.Load(body, d)
	if err != nil {
		b.log.Error("a blocklist's content is corrupt: the tenants that list it are served without it", "sha256", d.String(), "err", err)
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.wantedLocked(d) {
		return true
	}
	b.sets[d] = s
	b.publishLocked()
	b.log.Info("a blocklist is in force", "sha256", d.String(), "names", s.Len(), "bytes", s.Size(), "took", time.Since(start).Round(time.Millisecond))
	return true
}
