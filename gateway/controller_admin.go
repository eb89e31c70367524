package gateway

import (
	"context"
	"fmt"
	"time"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/store"
)

// This file holds the Controller's operations on who administers the node (admins, their
// sessions, API tokens, the audit log), one-time download links and the peer changes the web
// UI adds (rename, expiry). The web UI and the JSON API are their only callers; the policy
// (who may do what, for how long a session lives) is theirs, the Controller only carries it
// out. Methods that take now use the caller's clock, so that one clock decides expiry.

// RenamePeer renames the peer old of tenant to new. Keys, addresses, groups and site stay, so
// the device is not touched. It refuses (ErrInvalid) while the tenant's policy names the peer
// (peer:old): the policy would silently stop matching it.
func (c *Controller) RenamePeer(ctx context.Context, tenant, old, new string) (PeerInfo, error) {
	if old != new {
		if err := c.policyNamesPeer(ctx, tenant, old); err != nil {
			return PeerInfo{}, err
		}
	}
	if _, err := c.store.RenamePeer(ctx, tenant, old, new); err != nil {
		return PeerInfo{}, err
	}
	if err := c.node.Reconcile(ctx); err != nil {
		return PeerInfo{}, err
	}
	return c.Peer(ctx, tenant, new)
}

// policyNamesPeer returns an error wrapping ErrInvalid when the policy of tenant names peer.
func (c *Controller) policyNamesPeer(ctx context.Context, tenant, peer string) error {
	text, _, err := c.store.Policy(ctx, tenant)
	if err != nil || text == "" {
		return err
	}
	pol, err := firewall.Parse(text)
	if err != nil || pol == nil {
		return nil // a stored policy that does not parse names nothing the packet path uses
	}
	for _, r := range pol.Rules {
		for _, eps := range [][]firewall.Endpoint{r.Src, r.Dst} {
			for _, e := range eps {
				if e.Kind == firewall.EndpointPeer && e.Name == peer {
					return invalidError{fmt.Errorf("peer %q is named in the policy of tenant %q (line %d): take it out of the policy, rename the peer, then name it again", peer, tenant, r.Line)}
				}
			}
		}
	}
	return nil
}

// SetPeerExpiry sets when the peer name of tenant expires; nil: never. From then on it is
// treated like a disabled peer. The time must be in the future (ErrInvalid otherwise): to stop
// a peer now, disable it.
func (c *Controller) SetPeerExpiry(ctx context.Context, tenant, name string, at *time.Time) (PeerInfo, error) {
	if at != nil && !at.After(time.Now()) {
		return PeerInfo{}, invalidError{fmt.Errorf("expiry %s is not in the future: choose a later time, or disable the peer to stop it now", at.UTC().Format(time.RFC3339))}
	}
	if _, err := c.store.SetPeerExpiry(ctx, tenant, name, at); err != nil {
		return PeerInfo{}, err
	}
	if err := c.node.Reconcile(ctx); err != nil {
		return PeerInfo{}, err
	}
	return c.Peer(ctx, tenant, name)
}

// AddAdminRequest describes a new admin.
type AddAdminRequest struct {
	Name string
	// Role is store.RoleOwner, store.RoleTenantAdmin or store.RoleViewer.
	Role string
	// Tenant limits a tenant admin (required) or a viewer (optional) to one tenant.
	Tenant string
	// Password, empty: AddAdmin generates one and returns it.
	Password string
}

// AddAdmin creates an admin. It returns the password it generated when req.Password is
// empty, "" otherwise; nobody can see the password again.
func (c *Controller) AddAdmin(ctx context.Context, req AddAdminRequest) (store.Admin, string, error) {
	generated := ""
	if req.Password == "" {
		var err error
		if generated, err = store.GeneratePassword(); err != nil {
			return store.Admin{}, "", err
		}
		req.Password = generated
	}
	a, err := c.store.AddAdmin(ctx, store.NewAdmin{Name: req.Name, Role: req.Role, Tenant: req.Tenant, Password: req.Password})
	if err != nil {
		return store.Admin{}, "", err
	}
	return a, generated, nil
}

// FirstAdminName is the owner EnsureFirstAdmin creates.
const FirstAdminName = "admin"

// EnsureFirstAdmin creates the owner FirstAdminName with a generated password when there is
// no admin at all, and returns the password (shown once, never stored in the clear) and
// whether it created the admin.
func (c *Controller) EnsureFirstAdmin(ctx context.Context) (password string, created bool, err error) {
	if password, err = store.GeneratePassword(); err != nil {
		return "", false, err
	}
	created, err = c.store.AddFirstAdmin(ctx, FirstAdminName, password)
	if err != nil || !created {
		return "", false, err
	}
	return password, true, nil
}

// EnsureFirstAdminHash creates the owner FirstAdminName with a preset password hash when
// there is no admin at all, and reports whether it did.
func (c *Controller) EnsureFirstAdminHash(ctx context.Context, hash string) (created bool, err error) {
	return c.store.AddFirstAdminHash(ctx, FirstAdminName, hash)
}

// Admin returns the admin name.
func (c *Controller) Admin(ctx context.Context, name string) (store.Admin, error) {
	return c.store.Admin(ctx, name)
}

// AdminByID returns the admin with id.
func (c *Controller) AdminByID(ctx context.Context, id int64) (store.Admin, error) {
	return c.store.AdminByID(ctx, id)
}

// ListAdmins returns every admin ordered by name.
func (c *Controller) ListAdmins(ctx context.Context) ([]store.Admin, error) {
	return c.store.ListAdmins(ctx)
}

// RemoveAdmin deletes an admin and its sessions; the last enabled owner stays.
func (c *Controller) RemoveAdmin(ctx context.Context, name string) (store.Admin, error) {
	return c.store.RemoveAdmin(ctx, name)
}

// SetAdminPassword sets the password of admin name (empty: generate one, which it returns)
// and ends all of its sessions. The web server forgets the failures counted against the old
// password, so this also lifts the throttle of every address on this admin.
func (c *Controller) SetAdminPassword(ctx context.Context, name, password string) (store.Admin, string, error) {
	generated := ""
	if password == "" {
		var err error
		if generated, err = store.GeneratePassword(); err != nil {
			return store.Admin{}, "", err
		}
		password = generated
	}
	a, err := c.store.SetAdminPassword(ctx, name, password)
	if err != nil {
		return store.Admin{}, "", err
	}
	return a, generated, nil
}

// SetAdminRole changes the role and tenant of admin name; the last enabled owner stays one.
// Its sessions see the new role with their next request.
func (c *Controller) SetAdminRole(ctx context.Context, name, role, tenant string) (store.Admin, error) {
	return c.store.SetAdminRole(ctx, name, role, tenant)
}

// SetAdminDisabled disables (ending its sessions) or enables admin name.
func (c *Controller) SetAdminDisabled(ctx context.Context, name string, disabled bool) (store.Admin, error) {
	return c.store.SetAdminDisabled(ctx, name, disabled)
}

// DisableAdminTOTP turns off the one-time-code second factor of admin name, for an admin who
// lost their authenticator.
func (c *Controller) DisableAdminTOTP(ctx context.Context, name string) (store.Admin, error) {
	return c.store.DisableAdminTOTP(ctx, name)
}

// CheckAdminPassword reports whether password is admin name's. It costs one argon2id hash
// (also for an unknown name, whose error wraps store.ErrNotFound): callers bound how many run
// at once. Throttling and disabled are the caller's to look at.
func (c *Controller) CheckAdminPassword(ctx context.Context, name, password string) (store.Admin, bool, error) {
	return c.store.CheckAdminPassword(ctx, name, password)
}

// RecordSignInFailure counts a failed sign-in of admin id (from any address, since its last
// success) and returns the admin with the new count. It never locks the admin out: the web
// server slows down the address that failed.
func (c *Controller) RecordSignInFailure(ctx context.Context, id int64) (store.Admin, error) {
	return c.store.RecordSignInFailure(ctx, id)
}

// RecordSignIn notes a successful sign-in of admin id.
func (c *Controller) RecordSignIn(ctx context.Context, id int64, now time.Time) error {
	return c.store.RecordSignIn(ctx, id, now)
}

// SetAdminTOTPPending keeps secret as the TOTP secret admin id is enrolling.
func (c *Controller) SetAdminTOTPPending(ctx context.Context, id int64, secret []byte) error {
	return c.store.SetAdminTOTPPending(ctx, id, secret)
}

// AdminTOTPSecret returns admin id's TOTP secret, or with pending the one being enrolled.
func (c *Controller) AdminTOTPSecret(ctx context.Context, id int64, pending bool) ([]byte, error) {
	return c.store.AdminTOTPSecret(ctx, id, pending)
}

// EnableAdminTOTP makes the pending secret of admin id its secret; step is the time step of
// the code that confirmed it, now used up.
func (c *Controller) EnableAdminTOTP(ctx context.Context, id int64, step int64) error {
	return c.store.EnableAdminTOTP(ctx, id, step)
}

// UseAdminTOTPStep records the use of admin id's TOTP code of step; false: already used.
func (c *Controller) UseAdminTOTPStep(ctx context.Context, id int64, step int64) (bool, error) {
	return c.store.UseAdminTOTPStep(ctx, id, step)
}

// CreateSession starts a browser session and returns it with its secret token.
func (c *Controller) CreateSession(ctx context.Context, ns store.NewSession) (store.Session, string, error) {
	return c.store.CreateSession(ctx, ns)
}

// SessionByToken returns the session of token with its admin, expired or not.
func (c *Controller) SessionByToken(ctx context.Context, token string) (store.Session, error) {
	return c.store.SessionByToken(ctx, token)
}

// TouchSession records activity of session id at now.
func (c *Controller) TouchSession(ctx context.Context, id int64, now time.Time) error {
	return c.store.TouchSession(ctx, id, now)
}

// DeleteSession ends session id.
func (c *Controller) DeleteSession(ctx context.Context, id int64) error {
	return c.store.DeleteSession(ctx, id)
}

// DeleteAdminSessions ends every session of admin id (sign out everywhere).
func (c *Controller) DeleteAdminSessions(ctx context.Context, adminID int64) (int, error) {
	return c.store.DeleteAdminSessions(ctx, adminID)
}

// CountAdminSessions counts admin id's sessions live at now with the idle timeout idle.
func (c *Controller) CountAdminSessions(ctx context.Context, adminID int64, now time.Time, idle time.Duration) (int, error) {
	return c.store.CountAdminSessions(ctx, adminID, now, idle)
}

// PruneSessions deletes sessions dead at now.
func (c *Controller) PruneSessions(ctx context.Context, now time.Time, idle time.Duration) (int, error) {
	return c.store.PruneSessions(ctx, now, idle)
}

// AddAPIToken creates an API token and returns its secret, shown once.
func (c *Controller) AddAPIToken(ctx context.Context, nt store.NewAPIToken) (store.APIToken, string, error) {
	return c.store.AddAPIToken(ctx, nt)
}

// APITokenBySecret returns the token with secret, expired or not.
func (c *Controller) APITokenBySecret(ctx context.Context, secret string) (store.APIToken, error) {
	return c.store.APITokenBySecret(ctx, secret)
}

// TouchAPIToken records a use of token id at now.
func (c *Controller) TouchAPIToken(ctx context.Context, id int64, now time.Time) error {
	return c.store.TouchAPIToken(ctx, id, now)
}

// ListAPITokens returns every API token ordered by name.
func (c *Controller) ListAPITokens(ctx context.Context) ([]store.APIToken, error) {
	return c.store.ListAPITokens(ctx)
}

// RemoveAPIToken deletes an API token; it stops working at once.
func (c *Controller) RemoveAPIToken(ctx context.Context, name string) (store.APIToken, error) {
	return c.store.RemoveAPIToken(ctx, name)
}

// AppendAudit adds an entry to the audit log.
func (c *Controller) AppendAudit(ctx context.Context, e store.AuditEntry) error {
	return c.store.AppendAudit(ctx, e)
}

// ListAudit returns audit entries newest first, and whether more follow.
func (c *Controller) ListAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditEntry, bool, error) {
	return c.store.ListAudit(ctx, q)
}

// CreateDownloadLink makes a one-time link to the config of peer of tenant, valid from now for
// validFor (at most store.MaxDownloadLinkLife), and returns it with its secret token, which
// belongs in the link and is shown once.
func (c *Controller) CreateDownloadLink(ctx context.Context, tenant, peer, createdBy string, now time.Time, validFor time.Duration) (store.DownloadLink, string, error) {
	return c.store.CreateDownloadLink(ctx, tenant, peer, createdBy, now, now.Add(validFor))
}

// DownloadLink returns the link of token when it is still usable at now, without using it
// (for a page that asks before downloading, so that link previews do not spend it).
func (c *Controller) DownloadLink(ctx context.Context, token string, now time.Time) (store.DownloadLink, error) {
	return c.store.DownloadLinkByToken(ctx, token, now)
}

// RedeemDownloadLink uses the link of token at now and returns it with the peer's wg-quick
// config. Only one call per link succeeds; unknown, expired and used links all give the same
// error, wrapping store.ErrNotFound.
func (c *Controller) RedeemDownloadLink(ctx context.Context, token string, now time.Time) (store.DownloadLink, string, error) {
	l, err := c.store.DownloadLinkByToken(ctx, token, now)
	if err != nil {
		return store.DownloadLink{}, "", err
	}
	cfg, err := c.PeerConfig(ctx, l.TenantName, l.PeerName) // before using it up: a failure leaves the link valid
	if err != nil {
		return store.DownloadLink{}, "", err
	}
	if err := c.store.UseDownloadLink(ctx, l.ID, now); err != nil {
		return store.DownloadLink{}, "", err
	}
	return l, cfg, nil
}

// PruneDownloadLinks deletes links expired at now.
func (c *Controller) PruneDownloadLinks(ctx context.Context, now time.Time) (int, error) {
	return c.store.PruneDownloadLinks(ctx, now)
}
