package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"syscall"
	"time"

	"github.com/popgate/popgate/gateway/blocklist"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// DNS blocklists (issue 17). The controller alone fetches the lists' URLs (at add, at
// 'refresh', and every list's interval after its last fetch), parses them into the canonical
// form (gateway/blocklist) and stores the content once per hash. The desired state names each
// tenant's lists by hash (plane.TenantDNS); the appliance's node reads the contents from the
// store, a joined node asks for them over its node sync (BlocklistBlob).

// ErrFetch is wrapped by the error of a list's URL that could not be fetched or parsed.
var ErrFetch = errors.New("fetching the blocklist failed")

// Bounds of fetching a list.
const (
	// FetchTimeout bounds one fetch, from the connection to the last byte.
	FetchTimeout = 60 * time.Second
	// maxFetches bounds the fetches under way at once, with their memory (a list being
	// parsed holds its names).
	maxFetches = 2
	// maxRedirects bounds the redirects a fetch follows.
	maxRedirects = 5
	// refreshEvery is how often the controller looks for lists whose fetch is due.
	refreshEvery = time.Minute
)

// AddBlocklistRequest is a list to add from a URL.
type AddBlocklistRequest struct {
	Tenant string
	Name   string
	URL    string
	// Every: 0 is store.DefaultBlocklistEvery.
	Every time.Duration
	// PrivateOK: the URL may lead to a private address (an owner's list); otherwise only
	// public addresses are fetched from (store.PublicAddr), so that a tenant's admin cannot
	// make the controller reach what only it reaches.
	PrivateOK bool
}

// Blocklists returns tenant's blocklists. The error wraps store.ErrNotFound for an unknown
// tenant.
func (c *Controller) Blocklists(ctx context.Context, tenant string) ([]store.Blocklist, error) {
	return c.store.Blocklists(ctx, tenant)
}

// Blocklist returns tenant's list name.
func (c *Controller) Blocklist(ctx context.Context, tenant, name string) (store.Blocklist, error) {
	return c.store.Blocklist(ctx, tenant, name)
}

// AddBlocklist fetches req's URL and adds the list with what it holds; the nodes block its
// names within seconds. Nothing is added when the fetch fails (the error wraps ErrFetch).
func (c *Controller) AddBlocklist(ctx context.Context, req AddBlocklistRequest) (store.Blocklist, error) {
	if err := store.ValidateBlocklistName(req.Name); err != nil {
		return store.Blocklist{}, err
	}
	if err := store.ValidateBlocklistURL(req.URL); err != nil {
		return store.Blocklist{}, err
	}
	if req.Every != 0 {
		if err := store.ValidateBlocklistEvery(req.Every); err != nil {
			return store.Blocklist{}, err
		}
	}
	// Refuse what the store would refuse before fetching what may be 64 MiB.
	bs, err := c.store.Blocklists(ctx, req.Tenant)
	if err != nil {
		return store.Blocklist{}, err
	}
	if slices.ContainsFunc(bs, func(b store.Blocklist) bool { return b.Name == req.Name }) {
		return store.Blocklist{}, kindError{store.ErrExists, fmt.Sprintf("blocklist %q of tenant %s exists already: choose another name, or remove it first", req.Name, req.Tenant)}
	}
	if len(bs) >= store.MaxBlocklists {
		return store.Blocklist{}, kindError{store.ErrInvalid, fmt.Sprintf("tenant %s has %d blocklists, the most it may have: remove one first ('popgate dns blocklist remove')", req.Tenant, len(bs))}
	}
	l, err := c.fetchBlocklist(ctx, req.URL, req.PrivateOK)
	if err != nil {
		return store.Blocklist{}, err
	}
	b, err := c.store.AddBlocklist(ctx, store.NewBlocklist{Tenant: req.Tenant, Name: req.Name, URL: req.URL, Every: req.Every,
		PrivateOK: req.PrivateOK, Content: content(l)})
	if err != nil {
		return store.Blocklist{}, err
	}
	c.changed(ctx)
	return b, nil
}

// kindError is an error whose message a user reads, wrapping kind (a store.Err… value).
type kindError struct {
	kind error
	msg  string
}

func (e kindError) Error() string { return e.msg }
func (e kindError) Unwrap() error { return e.kind }

// UploadBlocklist parses a list from body (a file's content) and adds it as tenant's list
// name (create), or gives the uploaded list name this content (not create). The error wraps
// store.ErrInvalid for a list over the bounds, store.ErrExists (create) or store.ErrNotFound
// (not create).
func (c *Controller) UploadBlocklist(ctx context.Context, tenant, name string, body io.Reader, create bool) (store.Blocklist, error) {
	if err := store.ValidateBlocklistName(name); err != nil {
		return store.Blocklist{}, err
	}
	l, err := blocklist.Parse(body, blocklistLimits)
	if errors.Is(err, blocklist.ErrTooLarge) || errors.Is(err, blocklist.ErrTooMany) {
		return store.Blocklist{}, invalidError{err}
	}
	if err != nil {
		return store.Blocklist{}, err
	}
	var b store.Blocklist
	if create {
		b, err = c.store.AddBlocklist(ctx, store.NewBlocklist{Tenant: tenant, Name: name, Content: content(l)})
	} else {
		b, err = c.store.ReplaceBlocklistContent(ctx, tenant, name, content(l))
	}
	if err != nil {
		return store.Blocklist{}, err
	}
	c.changed(ctx)
	return b, nil
}

// RefreshBlocklist fetches tenant's list name now. When the fetch fails, the list keeps its
// content, the failure is recorded (and shown by Blocklists), and the error wraps ErrFetch.
// An uploaded list is refused (store.ErrInvalid): upload it again.
func (c *Controller) RefreshBlocklist(ctx context.Context, tenant, name string) (store.Blocklist, error) {
	b, err := c.store.Blocklist(ctx, tenant, name)
	if err != nil {
		return store.Blocklist{}, err
	}
	if b.Uploaded() {
		return store.Blocklist{}, invalidError{fmt.Errorf("blocklist %q of tenant %s was uploaded from a file: upload it again with 'popgate dns blocklist refresh --tenant %s %s --file PATH'", name, tenant, tenant, name)}
	}
	return c.refresh(ctx, b)
}

// refresh fetches list b and records what came of it; the error wraps ErrFetch when the
// fetch failed.
func (c *Controller) refresh(ctx context.Context, b store.Blocklist) (store.Blocklist, error) {
	l, err := c.fetchBlocklist(ctx, b.URL, b.PrivateOK)
	if err == nil {
		var changed bool
		var nb store.Blocklist
		nb, changed, err = c.store.RefreshedBlocklist(ctx, b.ID, content(l))
		if err == nil {
			if changed {
				c.changed(ctx)
			}
			return nb, nil
		}
		if !errors.Is(err, store.ErrInvalid) {
			return store.Blocklist{}, err // removed meanwhile, or the store failed
		}
		err = fmt.Errorf("%w: %w", ErrFetch, err) // over the tenant's bound: kept as a failure
	}
	if ferr := c.store.FailedBlocklist(context.WithoutCancel(ctx), b.ID, err.Error()); ferr != nil {
		c.log.Warn("record a blocklist's failed fetch", "tenant", b.TenantName, "blocklist", b.Name, "err", ferr)
	}
	return store.Blocklist{}, err
}

// RemoveBlocklist removes tenant's list name; the nodes stop blocking its names within
// seconds.
func (c *Controller) RemoveBlocklist(ctx context.Context, tenant, name string) error {
	if err := c.store.RemoveBlocklist(ctx, tenant, name); err != nil {
		return err
	}
	c.changed(ctx)
	return nil
}

// BlocklistBlob returns the content whose SHA-256 is sum to node n, when a tenant allowed in
// n's region lists it: a node gets no content it does not serve. The error wraps
// store.ErrNotFound otherwise.
func (c *Controller) BlocklistBlob(ctx context.Context, n store.Node, sum [32]byte) ([]byte, error) {
	snap, err := c.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	region := n.Region
	if region == "" {
		region = c.cfg.Region
	}
	listed := false
	for _, b := range snap.Blocklists {
		if b.SHA256 != sum {
			continue
		}
		if rs := snap.TenantRegions[b.TenantID]; len(rs) == 0 || slices.Contains(rs, region) {
			listed = true
			break
		}
	}
	if !listed {
		return nil, fmt.Errorf("%w: no blocklist of a tenant of region %s has content %x", store.ErrNotFound, region, sum[:8])
	}
	return c.store.Blob(ctx, sum)
}

// refreshDue fetches the lists whose interval has passed since their last fetch, one after
// the other, until the controller closes.
func (c *Controller) refreshDue(now time.Time) {
	ctx, cancel := c.lifeContext()
	defer cancel()
	ctx = store.WithActor(ctx, store.Actor{Name: "controller", Remote: "blocklist refresh"})
	due, err := c.store.DueBlocklists(ctx, now)
	if err != nil {
		c.log.Warn("read the blocklists due for a fetch", "err", err)
		return
	}
	for _, b := range due {
		if ctx.Err() != nil {
			return
		}
		if nb, err := c.refresh(ctx, b); err != nil {
			if ctx.Err() == nil {
				c.log.Warn("a blocklist could not be fetched: it keeps its last content", "tenant", b.TenantName, "blocklist", b.Name, "err", err)
			}
		} else if nb.SHA256 != b.SHA256 {
			c.log.Info("a blocklist has new content", "tenant", b.TenantName, "blocklist", b.Name, "names", nb.Names)
		}
	}
}

// lifeContext is a context cancelled when the controller closes.
func (c *Controller) lifeContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-c.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// blocklistRefs are the tenants' lists in the desired state, by tenant ID.
func blocklistRefs(snap *store.Snapshot) map[int64][]plane.BlocklistRef {
	out := map[int64][]plane.BlocklistRef{}
	for _, b := range snap.Blocklists {
		out[b.TenantID] = append(out[b.TenantID], plane.BlocklistRef{Name: b.Name, SHA256: b.SHA256, Names: b.Names})
	}
	return out
}

var blocklistLimits = blocklist.Limits{MaxNames: store.MaxBlocklistNames, MaxSize: store.MaxBlocklistSize}

func content(l blocklist.List) store.BlocklistContent {
	return store.BlocklistContent{Body: l.Body, SHA256: l.SHA256, Names: l.Names, Skipped: l.Skipped}
}

// fetchBlocklist fetches and parses the list at rawURL. The error wraps ErrFetch, and says
// what went wrong in one line.
func (c *Controller) fetchBlocklist(ctx context.Context, rawURL string, privateOK bool) (blocklist.List, error) {
	select {
	case c.fetchSem <- struct{}{}:
	case <-ctx.Done():
		return blocklist.List{}, ctx.Err()
	}
	defer func() { <-c.fetchSem }()
	ctx, cancel := context.WithTimeout(ctx, FetchTimeout)
	defer cancel()
	fail := func(format string, args ...any) (blocklist.List, error) {
		return blocklist.List{}, fmt.Errorf("%w: "+format, append([]any{ErrFetch}, args...)...)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return fail("%v", err)
	}
	req.Header.Set("User-Agent", "popgate (blocklist fetcher)")
	hc := fetchClient(privateOK)
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fail("%s did not answer within %s: check the URL, or use a closer mirror", rawURL, FetchTimeout)
		}
		return fail("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail("GET %s answered %s: check the URL", rawURL, resp.Status)
	}
	l, err := blocklist.Parse(resp.Body, blocklistLimits)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return fail("%s did not send the whole list within %s: use a closer mirror, or a smaller list", rawURL, FetchTimeout)
		}
		return fail("%s: %v", rawURL, err)
	}
	return l, nil
}

// errNotPublic is the dial error of an address a tenant's list may not be fetched from.
var errNotPublic = errors.New("not a public address: a tenant admin's list may come only from the internet (an owner may add lists on private addresses)")

// fetchClient is an HTTP client for one fetch: no proxy, bounded redirects to http(s) only,
// and, unless privateOK, connections to public addresses only (checked at each dial, so
// that neither a redirect nor a DNS answer leads elsewhere).
func fetchClient(privateOK bool) *http.Client {
	d := &net.Dialer{Timeout: 15 * time.Second}
	if !privateOK {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !store.PublicAddr(ap.Addr()) {
				return fmt.Errorf("%s is %w", address, errNotPublic)
			}
			return nil
		}
	}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            d.DialContext,
			TLSHandshakeTimeout:    15 * time.Second,
			ResponseHeaderTimeout:  30 * time.Second,
			MaxResponseHeaderBytes: 64 << 10,
			ForceAttemptHTTP2:      true,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return fmt.Errorf("more than %d redirects", maxRedirects)
			}
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return fmt.Errorf("a redirect to %s, which is not http or https", req.URL.Redacted())
			}
			return nil
		},
	}
}
