package webui

import (
	"net/http"
	"net/url"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// The event log and the webhook on the API (issue 16): everyone reads the events (a token
// limited to a tenant its tenant's only, by scopedQuery); the webhook is the owners'.

// eventQuery reads GET /api/v1/events' query: limit, offset, tenant, kind, node, since,
// until.
func eventQuery(v url.Values) (store.EventQuery, error) {
	p, err := logPageQuery(v, store.MaxEventPage, "events")
	if err != nil {
		return store.EventQuery{}, err
	}
	return store.EventQuery{Tenant: v.Get("tenant"), Kind: v.Get("kind"), Node: v.Get("node"),
		Since: p.Since, Until: p.Until, Offset: p.Offset, Limit: p.Limit}, nil
}

// APIEventOf is the API's form of e.
func APIEventOf(e store.Event) APIEvent {
	return APIEvent{ID: e.ID, Time: e.At.UTC(), Kind: e.Kind, Node: e.Node, Tenant: e.Tenant, Subject: e.Subject, Message: e.Message, Data: e.Data}
}

func (a *API) listEvents(w http.ResponseWriter, r *http.Request) error {
	q, err := eventQuery(r.URL.Query())
	if err != nil {
		return err
	}
	es, more, err := a.ctrl.Events(r.Context(), q)
	if err != nil {
		return err
	}
	out := APIEvents{Events: make([]APIEvent, len(es)), More: more}
	for i, e := range es {
		out.Events[i] = APIEventOf(e)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// optTime is t, or nil when it is zero.
func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func apiWebhook(w control.WebhookInfo) APIWebhook {
	return APIWebhook{URL: w.URL, CreatedAt: w.CreatedAt.UTC(), Delivered: w.Delivered, Failed: w.Failed, GivenUp: w.GivenUp,
		Dropped: w.Dropped, Queued: w.Queued, LastAttempt: optTime(w.LastAttempt), LastOK: optTime(w.LastOK), LastError: w.LastError,
		Retrying: w.Retrying, NextAttempt: optTime(w.NextAttempt)}
}

func (a *API) webhook(w http.ResponseWriter, r *http.Request) error {
	info, err := a.ctrl.Webhook(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiWebhook(info))
	return nil
}

func (a *API) setWebhook(w http.ResponseWriter, r *http.Request) error {
	var req APIWebhookSet
	if err := decode(r, &req); err != nil {
		return err
	}
	hook, secret, err := a.ctrl.SetWebhook(r.Context(), req.URL)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, APIWebhookCreated{Webhook: apiWebhook(control.WebhookInfo{Webhook: hook}), Secret: secret})
	return nil
}

func (a *API) removeWebhook(w http.ResponseWriter, r *http.Request) error {
	if err := a.ctrl.RemoveWebhook(r.Context()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
