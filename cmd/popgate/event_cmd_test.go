package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popgate/popgate/webui"
)

// TestServeEventCommands runs the event commands against a real serve: the webhook is set
// (its secret printed once), a peer about to expire becomes an event in 'event list' and at
// the webhook, signed with that secret; show says what was delivered and never the secret;
// bad input is one line and a non-zero exit.
func TestServeEventCommands(t *testing.T) {
	dir := t.TempDir()
	stop := startServe(t, dir, 8)
	defer stop()
	cli := serveCLI{t, dir}
	must, refused := cli.must, cli.refused

	// A receiver that checks each delivery's signature as README says.
	var mu sync.Mutex
	var secret string
	var got []webui.APIEvent
	delivered := make(chan struct{}, 10)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		m := hmac.New(sha256.New, []byte(secret))
		m.Write(body)
		var e webui.APIEvent
		if r.Header.Get("X-Popgate-Signature") != "sha256="+hex.EncodeToString(m.Sum(nil)) || json.Unmarshal(body, &e) != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		got = append(got, e)
		delivered <- struct{}{}
	}))
	defer rcv.Close()

	_, note := must("event", "list")
	if !strings.Contains(note, "no such events") {
		t.Errorf("event list of none: %q", note)
	}
	refused(exitRuntime, "no webhook is set", "event", "webhook", "show")
	refused(exitUsage, "is not http or https", "event", "webhook", "set", "ftp://alerts.example.com/")
	refused(exitUsage, "missing URL", "event", "webhook", "set")
	refused(exitUsage, `--since "yesterday" is not a duration`, "event", "list", "--since", "yesterday")
	refused(exitUsage, `event kind "Node" is invalid`, "event", "list", "--kind", "Node")
	refused(exitUsage, "--limit", "event", "list", "--limit", "0")

	out, note := must("event", "webhook", "set", rcv.URL+"/hook")
	s := strings.TrimSpace(out)
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(s) || !strings.Contains(note, "shown this once") {
		t.Fatalf("webhook set printed %q, noted %q", out, note)
	}
	mu.Lock()
	secret = s
	mu.Unlock()

	must("tenant", "add", "acme")
	must("peer", "add", "--tenant", "acme", "contractor")
	must("peer", "set", "--tenant", "acme", "--expires", "2h", "contractor")
	select {
	case <-delivered:
	case <-time.After(30 * time.Second):
		t.Fatal("no event reached the webhook")
	}
	mu.Lock()
	e := got[0]
	mu.Unlock()
	if e.Kind != "peer.expiring" || e.Tenant != "acme" || e.Subject != "peer:acme/contractor" || !strings.Contains(e.Message, "expires at") {
		t.Errorf("delivered %+v", e)
	}

	out, _ = must("event", "list", "--json", "--since", "1h", "--kind", "peer")
	var page webui.APIEvents
	if err := json.Unmarshal([]byte(out), &page); err != nil || len(page.Events) != 1 || page.Events[0].ID != e.ID {
		t.Errorf("event list --json: %v\n%s", err, out)
	}
	table, _ := must("event", "list", "--tenant", "acme")
	if !strings.Contains(table, "peer.expiring") || !strings.Contains(table, "peer:acme/contractor") {
		t.Errorf("event list:\n%s", table)
	}
	if _, note := must("event", "list", "--kind", "link"); !strings.Contains(note, "no such events") {
		t.Errorf("event list --kind link: %q", note)
	}

	var show string
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(show, "DELIVERED     1") && time.Now().Before(deadline) {
		show, _ = must("event", "webhook", "show")
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(show, rcv.URL+"/hook") || !strings.Contains(show, "DELIVERED     1") || strings.Contains(show, s) {
		t.Errorf("webhook show:\n%s", show)
	}
	out, _ = must("event", "webhook", "show", "--json")
	if strings.Contains(out, s) || !strings.Contains(out, `"delivered": 1`) {
		t.Errorf("webhook show --json:\n%s", out)
	}
	if _, note := must("event", "webhook", "remove"); !strings.Contains(note, "webhook removed") {
		t.Errorf("webhook remove: %q", note)
	}
	refused(exitRuntime, "no webhook is set", "event", "webhook", "remove")
	audit, _ := must("audit", "--action", "webhook")
	if strings.Count(audit, "webhook:events") != 2 || strings.Contains(audit, "/hook") {
		t.Errorf("audit of the webhook:\n%s", audit)
	}
}
