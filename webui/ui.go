package webui

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// UI is the pages side of the web UI: server-rendered HTML pages on top of the controller
// and the store, with small htmx enhancements. It implements Pages; the auth side puts
// sign-in, sessions and CSRF protection in front of it.
type UI struct {
	ctrl  uiBackend
	audit Auditor
	log   *slog.Logger
	now   func() time.Time

	tmpl   *templates
	static map[string]staticFile // by file name

	// publicURL starts one-time download links ("https://vpn.example.com"); "": the
	// address the admin browsed. Set before serving (SetPublicURL).
	publicURL string

	// From the controller, or setSources; read-only once serving.
	admins    adminLister
	auditLog  auditReader
	links     linkStore
	lifecycle peerLifecycle
}

var _ Pages = (*UI)(nil)

// uiBackend is what the pages need of the controller. Production uses *control.Controller;
// tests put a fake in front of it for what a real node cannot cheaply hold (10,000 peers,
// live traffic).
type uiBackend interface {
	Status(ctx context.Context) (control.Status, error)
	ListTenants(ctx context.Context) ([]control.TenantInfo, error)
	AddTenant(ctx context.Context, name string) (store.Tenant, error)
	RemoveTenant(ctx context.Context, name string) error
	SetTenantSplitTunnel(ctx context.Context, tenant string, on bool) (control.TenantInfo, error)
	ListPeers(ctx context.Context, tenant string) ([]control.PeerInfo, error)
	Peer(ctx context.Context, tenant, name string) (control.PeerInfo, error)
	AddPeer(ctx context.Context, req control.AddPeerRequest) (control.PeerInfo, string, error)
	PeerConfig(ctx context.Context, tenant, name, region string) (string, error)
	ConfigRegions(ctx context.Context, tenant string) ([]store.Region, error)
	SetPeerEnabled(ctx context.Context, tenant, name string, enabled bool) (control.PeerInfo, error)
	SetPeerGroups(ctx context.Context, tenant, name string, groups []string) (control.PeerInfo, error)
	SetPeerSite(ctx context.Context, tenant, name, site string, prefixes []netip.Prefix) (control.PeerInfo, error)
	RemovePeer(ctx context.Context, tenant, name string) error
	Policy(ctx context.Context, tenant string) (text string, isDefault bool, err error)
	SetPolicy(ctx context.Context, tenant, text string) (*firewall.RuleSet, []firewall.Problem, error)
	PolicyWarnings(ctx context.Context, tenant string) ([]firewall.Problem, error)
	RotatePeerKey(ctx context.Context, tenant, name, publicKey, region string) (control.PeerInfo, string, error)
	Routes(ctx context.Context, tenant string) ([]store.Route, error)
	AddRoute(ctx context.Context, tenant string, prefix netip.Prefix, via string) (store.Route, error)
	RemoveRoute(ctx context.Context, tenant string, prefix netip.Prefix) error
	Regions(ctx context.Context) ([]store.Region, error)
	AddRegion(ctx context.Context, name, endpoint string) (store.Region, error)
	SetRegion(ctx context.Context, name, endpoint string) (store.Region, error)
	RemoveRegion(ctx context.Context, name string) error
	SetTenantRegions(ctx context.Context, tenant string, regions []string) (control.TenantInfo, error)
	SetTenantDomain(ctx context.Context, tenant, domain string) (control.TenantInfo, error)
	DNSZones(ctx context.Context, tenant string) ([]store.DNSZone, error)
	AddDNSZone(ctx context.Context, tenant, zone string, servers []netip.AddrPort) (store.DNSZone, error)
	RemoveDNSZone(ctx context.Context, tenant, zone string) error
	DNSUpstreams(ctx context.Context, tenant string) ([]store.DNSUpstream, error)
	SetDNSUpstreams(ctx context.Context, tenant string, ups []string) ([]store.DNSUpstream, error)
	DNSLogSettings(ctx context.Context, tenant string) (store.DNSLogSettings, error)
	EnableDNSLog(ctx context.Context, tenant string, keep time.Duration) (store.DNSLogSettings, error)
	DisableDNSLog(ctx context.Context, tenant string) (int64, error)
	DNSLog(ctx context.Context, q store.DNSLogQuery) ([]store.DNSLogEntry, bool, error)
	Blocklists(ctx context.Context, tenant string) ([]store.Blocklist, error)
	AddBlocklist(ctx context.Context, req control.AddBlocklistRequest) (store.Blocklist, error)
	RefreshBlocklist(ctx context.Context, tenant, name string) (store.Blocklist, error)
	RemoveBlocklist(ctx context.Context, tenant, name string) error
	Nodes(ctx context.Context) ([]control.NodeInfo, error)
	NodeAddr() string
	NodeToken(ctx context.Context, roles, region, name string, life time.Duration) (string, store.JoinToken, error)
	RemoveNode(ctx context.Context, name string) ([]store.ExitDropped, error)
	Events(ctx context.Context, q store.EventQuery) ([]store.Event, bool, error)
	Webhook(ctx context.Context) (control.WebhookInfo, error)
	Checks(ctx context.Context, tenant string) ([]control.CheckInfo, error)
	CheckHistory(ctx context.Context, id int64, since time.Time, width time.Duration) ([]store.CheckBin, error)
	OwnNodeName() string
	OwnLinks() []plane.LinkState
	ReportedMinutes(ctx context.Context, since time.Time) (map[uint32]int, error)
	TenantTraffic(ctx context.Context, tenant string, span time.Duration) (control.TrafficSeries, error)
	PeerTraffic(ctx context.Context, tenant, name string, span time.Duration) (control.TrafficSeries, error)
}

var _ uiBackend = (*control.Controller)(nil)

// NewUI returns the pages on top of ctrl, with the admins and the audit log in st. Every
// change is recorded with audit; nil: the log, until the server hands over its Auditor with
// SetAuditor.
func NewUI(ctrl *control.Controller, st Store, audit Auditor, log *slog.Logger) (*UI, error) {
	if ctrl == nil || st == nil {
		return nil, errors.New("webui: NewUI needs the controller and the store")
	}
	return newUI(ctrl, st, audit, log)
}

func newUI(ctrl uiBackend, st adminLister, audit Auditor, log *slog.Logger) (*UI, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if audit == nil {
		audit = logAuditor{log}
	}
	u := &UI{ctrl: ctrl, audit: audit, log: log, now: time.Now}
	u.findSources(ctrl, st)
	if err := u.parseTemplatesInto(); err != nil {
		return nil, err
	}
	if err := u.loadStatic(); err != nil {
		return nil, err
	}
	return u, nil
}

// Routes registers every page on mux (see Pages). Changes need at least a tenant admin;
// tenant scoping is checked in each handler. The static files and the one-time download
// links are public: a link's token is its authorisation.
func (u *UI) Routes(mux *http.ServeMux, protect func(min Role, h http.HandlerFunc) http.Handler) {
	for _, rt := range []struct {
		pattern string
		min     Role
		h       http.HandlerFunc
	}{
		{"GET /{$}", RoleViewer, u.dashboard},

		{"GET /tenants", RoleViewer, u.tenants},
		{"POST /tenants", RoleOwner, u.createTenant},
		{"GET /tenants/{tenant}", RoleViewer, u.tenant},
		{"POST /tenants/{tenant}/split-tunnel", RoleTenantAdmin, u.setSplitTunnel},
		{"GET /tenants/{tenant}/delete", RoleOwner, u.confirmDeleteTenant},
		{"POST /tenants/{tenant}/delete", RoleOwner, u.deleteTenant},
		{"GET /tenants/{tenant}/policy", RoleViewer, u.policy},
		{"POST /tenants/{tenant}/policy", RoleTenantAdmin, u.savePolicy},
		{"GET /tenants/{tenant}/routes", RoleViewer, u.routes},
		{"POST /tenants/{tenant}/routes", RoleTenantAdmin, u.addRoute},
		{"POST /tenants/{tenant}/routes/remove", RoleTenantAdmin, u.removeRoute},
		{"GET /tenants/{tenant}/regions", RoleViewer, u.tenantRegionsTab},
		{"POST /tenants/{tenant}/regions", RoleOwner, u.setTenantRegions},
		{"GET /tenants/{tenant}/dns", RoleViewer, u.tenantDNSTab},
		{"POST /tenants/{tenant}/dns/domain", RoleTenantAdmin, u.setTenantDomain},
		{"POST /tenants/{tenant}/dns/zones", RoleTenantAdmin, u.addDNSZone},
		{"POST /tenants/{tenant}/dns/zones/remove", RoleTenantAdmin, u.removeDNSZone},
		{"POST /tenants/{tenant}/dns/upstreams", RoleTenantAdmin, u.setDNSUpstreams},
		{"POST /tenants/{tenant}/dns/upstreams/reset", RoleTenantAdmin, u.resetDNSUpstreams},
		{"POST /tenants/{tenant}/dns/blocklists", RoleTenantAdmin, u.addDNSBlocklist},
		{"POST /tenants/{tenant}/dns/blocklists/refresh", RoleTenantAdmin, u.refreshDNSBlocklist},
		{"POST /tenants/{tenant}/dns/blocklists/remove", RoleTenantAdmin, u.removeDNSBlocklist},
		{"POST /tenants/{tenant}/dns/log/enable", RoleTenantAdmin, u.enableDNSLog},
		{"POST /tenants/{tenant}/dns/log/disable", RoleTenantAdmin, u.disableDNSLog},

		{"GET /regions", RoleViewer, u.regions},
		{"POST /regions", RoleOwner, u.createRegion},
		{"GET /regions/{region}", RoleViewer, u.region},
		{"POST /regions/{region}/endpoint", RoleOwner, u.setRegionEndpoint},
		{"GET /regions/{region}/delete", RoleOwner, u.confirmDeleteRegion},
		{"POST /regions/{region}/delete", RoleOwner, u.deleteRegion},

		// Nodes are the installation's, not a tenant's: owners only, as on the API.
		// The network as the PoPs see it: regions, links, checks (each principal's own).
		{"GET /network", RoleViewer, u.network},

		{"GET /nodes", RoleOwner, u.nodes},
		{"POST /nodes/tokens", RoleOwner, u.createNodeToken},
		{"GET /nodes/{node}/delete", RoleOwner, u.confirmDeleteNode},
		{"POST /nodes/{node}/delete", RoleOwner, u.deleteNode},

		{"GET /peers", RoleViewer, u.peers},
		{"GET /peers/table", RoleViewer, u.peersTable},
		{"GET /peers/new", RoleTenantAdmin, u.newPeer},
		{"POST /peers", RoleTenantAdmin, u.createPeer},
		{"GET /tenants/{tenant}/peers/{peer}", RoleViewer, u.peer},
		{"POST /tenants/{tenant}/peers/{peer}/enable", RoleTenantAdmin, u.enablePeer},
		{"POST /tenants/{tenant}/peers/{peer}/disable", RoleTenantAdmin, u.disablePeer},
		{"POST /tenants/{tenant}/peers/{peer}/rename", RoleTenantAdmin, u.renamePeer},
		{"POST /tenants/{tenant}/peers/{peer}/expiry", RoleTenantAdmin, u.setPeerExpiry},
		{"POST /tenants/{tenant}/peers/{peer}/groups", RoleTenantAdmin, u.setPeerGroups},
		{"POST /tenants/{tenant}/peers/{peer}/site", RoleTenantAdmin, u.setPeerSite},
		{"POST /tenants/{tenant}/peers/{peer}/rotate", RoleTenantAdmin, u.rotatePeerKey},
		{"GET /tenants/{tenant}/peers/{peer}/delete", RoleTenantAdmin, u.confirmDeletePeer},
		{"POST /tenants/{tenant}/peers/{peer}/delete", RoleTenantAdmin, u.deletePeer},
		// Configs hold the peer's private key: viewers do not get them.
		{"GET /tenants/{tenant}/peers/{peer}/config", RoleTenantAdmin, u.peerConfig},
		{"GET /tenants/{tenant}/peers/{peer}/config/download", RoleTenantAdmin, u.downloadConfig},
		{"GET /tenants/{tenant}/peers/{peer}/config/qr.png", RoleTenantAdmin, u.configQR},
		{"POST /tenants/{tenant}/peers/{peer}/config/link", RoleTenantAdmin, u.createLink},

		{"GET /admins", RoleOwner, u.adminsPage},
		{"POST /admins", RoleOwner, u.addAdmin},
		{"GET /admins/{admin}", RoleOwner, u.adminEdit},
		{"POST /admins/{admin}/role", RoleOwner, u.setAdminRole},
		{"POST /admins/{admin}/password", RoleOwner, u.resetAdminPassword},
		{"POST /admins/{admin}/disable", RoleOwner, u.disableAdmin},
		{"POST /admins/{admin}/enable", RoleOwner, u.enableAdmin},
		{"POST /admins/{admin}/totp/disable", RoleOwner, u.disableAdminTOTP},
		{"GET /admins/{admin}/delete", RoleOwner, u.confirmRemoveAdmin},
		{"POST /admins/{admin}/delete", RoleOwner, u.removeAdmin},
		{"POST /tokens", RoleOwner, u.addToken},
		{"GET /tokens/{token}/delete", RoleOwner, u.confirmRemoveToken},
		{"POST /tokens/{token}/delete", RoleOwner, u.removeToken},
		{"GET /audit", RoleViewer, u.auditPage},
		{"GET /events", RoleViewer, u.eventsPage},

		{"/", RoleViewer, u.notFound},
	} {
		mux.Handle(rt.pattern, protect(rt.min, rt.h))
	}
	mux.Handle("GET /static/", http.HandlerFunc(u.serveStatic))
	mux.Handle("GET "+DownloadPathPrefix+"{token}", http.HandlerFunc(u.linkPage))
	mux.Handle("POST "+DownloadPathPrefix+"{token}", http.HandlerFunc(u.redeemLink))
}

// notFound answers every path no page has.
func (u *UI) notFound(w http.ResponseWriter, r *http.Request) {
	u.RenderError(w, r, http.StatusNotFound, "")
}
