package webui

import (
	"encoding/base64"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

func (a *API) listNodes(w http.ResponseWriter, r *http.Request) error {
	ns, err := a.ctrl.Nodes(r.Context())
	if err != nil {
		return err
	}
	names := map[uint32]string{plane.ControllerNode: a.ctrl.Config().Backbone.Name}
	for _, n := range ns {
		names[n.BackboneID] = n.Name
	}
	out := APIJoinedNodes{Nodes: make([]APIJoinedNode, len(ns))}
	for i, n := range ns {
		out.Nodes[i] = apiJoinedNode(n)
		for _, l := range n.Links {
			out.Nodes[i].Links = append(out.Nodes[i].Links, APIBackboneLink{Node: names[l.Node], NodeID: l.Node, State: l.State,
				RTTMicros: l.RTT.Microseconds(), LossPercent: int(math.Round(l.Loss * 100))})
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func apiJoinedNode(n control.NodeInfo) APIJoinedNode {
	out := APIJoinedNode{Name: n.Name, Roles: n.Roles, Region: n.Region, Pin: base64.RawURLEncoding.EncodeToString(n.Pin[:]),
		BackboneEndpoint: n.BackboneEndpoint, Version: n.Version, JoinedAt: n.JoinedAt.UTC(), Connected: n.Connected,
		AppliedGeneration: n.AppliedGeneration, Current: n.Current, ApplyError: n.ApplyError, BackboneID: n.BackboneID}
	if n.BackbonePublicKey != (store.Key{}) {
		out.BackbonePublicKey = n.BackbonePublicKey.String()
	}
	if !n.LastSeen.IsZero() {
		t := n.LastSeen.UTC()
		out.LastSeen = &t
	}
	if n.Connected {
		t := n.ConnectedSince.UTC()
		out.ConnectedSince = &t
	}
	return out
}

func (a *API) addNodeToken(w http.ResponseWriter, r *http.Request) error {
	var req APINewNodeToken
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.ExpiresIn < 0 || req.ExpiresIn > int64(control.MaxNodeTokenLife/time.Second) {
		return fmt.Errorf("%w: expires_in %d is out of range: give 60 to %d seconds", errBadRequest, req.ExpiresIn, int64(control.MaxNodeTokenLife/time.Second))
	}
	line, jt, err := a.ctrl.NodeToken(r.Context(), req.Roles, req.Region, req.Name, time.Duration(req.ExpiresIn)*time.Second)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, APINodeToken{Token: line, Roles: jt.Roles, Region: jt.Region, Name: jt.Name, ExpiresAt: jt.ExpiresAt.UTC()})
	return nil
}

func (a *API) removeNode(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.ctrl.RemoveNode(r.Context(), r.PathValue("node")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
