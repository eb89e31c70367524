package webui

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/popgate/popgate/gateway/blocklist"
	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// A tenant's DNS blocklists, at /api/v1/tenants/{tenant}/dns/blocklists: a list from a URL is
// added with POST (the controller fetches it at once), a list from a file is uploaded with PUT
// …/{blocklist}/content (?create=true to add it), and refreshed the same way.

// blocklistPutPattern is the route that uploads a list, whose body may be up to
// store.MaxBlocklistSize.
const blocklistPutPattern = "PUT /api/v1/tenants/{tenant}/dns/blocklists/{blocklist}/content"

func (a *API) listBlocklists(w http.ResponseWriter, r *http.Request) error {
	bs, err := a.ctrl.Blocklists(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	out := APIBlocklists{Blocklists: make([]APIBlocklist, len(bs))}
	for i, b := range bs {
		out.Blocklists[i] = apiBlocklist(b)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) blocklist(w http.ResponseWriter, r *http.Request) error {
	b, err := a.ctrl.Blocklist(r.Context(), r.PathValue("tenant"), r.PathValue("blocklist"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiBlocklist(b))
	return nil
}

func (a *API) addBlocklist(w http.ResponseWriter, r *http.Request) error {
	var req APINewBlocklist
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.EverySeconds < 0 || req.EverySeconds > int(store.MaxBlocklistEvery/time.Second) {
		return fmt.Errorf("%w: every_seconds %d is out of range: give %d to %d", errBadRequest, req.EverySeconds,
			int(store.MinBlocklistEvery/time.Second), int(store.MaxBlocklistEvery/time.Second))
	}
	// Only an owner's list may be on a private address: a tenant's admin must not make the
	// controller reach what only it reaches.
	p := PrincipalFrom(r.Context())
	b, err := a.ctrl.AddBlocklist(r.Context(), control.AddBlocklistRequest{Tenant: r.PathValue("tenant"), Name: req.Name, URL: req.URL,
		Every: time.Duration(req.EverySeconds) * time.Second, PrivateOK: p != nil && p.Role == RoleOwner && p.Tenant == ""})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, apiBlocklist(b))
	return nil
}

func (a *API) uploadBlocklist(w http.ResponseWriter, r *http.Request) error {
	create := false
	if v := r.URL.Query().Get("create"); v != "" {
		var err error
		if create, err = strconv.ParseBool(v); err != nil {
			return fmt.Errorf("%w: create=%s: give true (add the list) or false (replace an uploaded list's content)", errBadRequest, quoteInput(v))
		}
	}
	b, err := a.ctrl.UploadBlocklist(r.Context(), r.PathValue("tenant"), r.PathValue("blocklist"), r.Body, create)
	if berr := bodyError(err, "the list", "use a smaller list, or split it into several"); berr != nil {
		return berr
	}
	if errors.Is(err, blocklist.ErrTooLarge) {
		return fmt.Errorf("%w: %v", errTooLarge, err)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiBlocklist(b))
	return nil
}

func (a *API) refreshBlocklist(w http.ResponseWriter, r *http.Request) error {
	b, err := a.ctrl.RefreshBlocklist(r.Context(), r.PathValue("tenant"), r.PathValue("blocklist"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiBlocklist(b))
	return nil
}

func (a *API) removeBlocklist(w http.ResponseWriter, r *http.Request) error {
	if err := a.ctrl.RemoveBlocklist(r.Context(), r.PathValue("tenant"), r.PathValue("blocklist")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func apiBlocklist(b store.Blocklist) APIBlocklist {
	out := APIBlocklist{Name: b.Name, Tenant: b.TenantName, URL: b.URL, EverySeconds: int(b.Every / time.Second),
		SHA256: hex.EncodeToString(b.SHA256[:]), Names: b.Names, Skipped: b.Skipped,
		UpdatedAt: b.UpdatedAt.UTC(), CheckedAt: b.CheckedAt.UTC(), Error: b.Error, CreatedAt: b.CreatedAt.UTC()}
	if !b.Uploaded() {
		next := b.CheckedAt.Add(b.Every).UTC()
		out.NextFetchAt = &next
	}
	if !b.ErrorAt.IsZero() {
		at := b.ErrorAt.UTC()
		out.ErrorAt = &at
	}
	return out
}
