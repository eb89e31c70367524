package webui

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/store"
)

// savePolicy serves POST /tenants/{tenant}/policy: field policy, the whole file. A policy
// with problems is shown again with each problem and its line; nothing is saved then.
func (u *UI) savePolicy(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("tenant")
	// URL encoding may triple the size of the text.
	if !u.parseForm(w, r, 3*store.MaxPolicySize+4096) || !u.changeTenant(w, r, t) {
		return
	}
	text := strings.ReplaceAll(r.PostForm.Get("policy"), "\r\n", "\n")
	if len(text) > store.MaxPolicySize {
		u.renderPolicy(w, r, http.StatusUnprocessableEntity, policyPage{Text: text, Problems: []policyProblem{{
			Msg: fmt.Sprintf("The policy has %d bytes, at most %d are allowed: write rules for groups instead of single peers.", len(text), store.MaxPolicySize)}}})
		return
	}
	if strings.TrimSpace(text) == "" {
		// The store takes an empty policy for "never set", which means the node's default:
		// not what someone who cleared the editor expects.
		u.renderPolicy(w, r, http.StatusUnprocessableEntity, policyPage{Text: text, Problems: []policyProblem{{
			Msg: "The policy is empty. Write \"default deny\" to block every flow, or \"Discard changes\" to get the current policy back."}}})
		return
	}
	if _, _, err := u.ctrl.SetPolicy(r.Context(), t, text); err != nil {
		var pe *firewall.PolicyError
		switch {
		case errors.As(err, &pe):
			u.renderPolicy(w, r, http.StatusUnprocessableEntity, policyPage{Text: text, Problems: policyProblems(text, pe)})
		case errors.Is(err, store.ErrInvalid):
			u.renderPolicy(w, r, http.StatusUnprocessableEntity, policyPage{Text: text, Problems: []policyProblem{{Msg: err.Error()}}})
		default:
			u.fail(w, r, err)
		}
		return
	}
	// The editor shows the warnings of the stored policy, these among them.
	redirect(w, r, tenantPath(t)+"/policy", "policy-saved")
}

// policyProblems pairs each problem with the text of its line.
func policyProblems(text string, pe *firewall.PolicyError) []policyProblem {
	lines := strings.Split(text, "\n")
	out := make([]policyProblem, 0, len(pe.Problems)+1)
	for _, p := range pe.Problems {
		pp := policyProblem{Line: p.Line, Msg: p.Msg}
		if p.Line >= 1 && p.Line <= len(lines) {
			pp.Source = strings.TrimRight(lines[p.Line-1], " \t")
			if len(pp.Source) > 200 {
				pp.Source = pp.Source[:200] + "…"
			}
		}
		out = append(out, pp)
	}
	if pe.More > 0 {
		out = append(out, policyProblem{Msg: fmt.Sprintf("and %d more problems: fix these first.", pe.More)})
	}
	return out
}
