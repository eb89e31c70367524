package store

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

// TestExpiryAfterYear9999 checks that the store refuses peer and token expiries it could not
// give back: JSON (and so the API) cannot write a year after 9999, so such a peer would make
// every listing of its tenant end early. "9999-12-31T23:00:00-05:00" is valid RFC 3339 that
// the API decodes, and 10000-01-01 in UTC; the CLI's --expires 9999-12-31 means the end of that
// day, the same instant.
func TestExpiryAfterYear9999(t *testing.T) {
	ctx := context.Background()
	s, _ := openClocked(t)
	mustTenant(t, s, "acme")
	mustPeer(t, s, newPeer(t, "acme", "laptop"))

	last := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	for _, at := range []time.Time{
		time.Date(9999, 12, 31, 23, 0, 0, 0, time.FixedZone("", -5*3600)),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		last.Add(time.Second),
	} {
		_, err := s.SetPeerExpiry(ctx, "acme", "laptop", &at)
		wantErr(t, err, ErrInvalid, "after the year 9999")
		_, _, err = s.AddAPIToken(ctx, NewAPIToken{Name: "ci", Role: RoleOwner, ExpiresAt: at})
		wantErr(t, err, ErrInvalid, "after the year 9999")
	}

	p, err := s.SetPeerExpiry(ctx, "acme", "laptop", &last)
	if err != nil {
		t.Fatalf("the last second of 9999: %v", err)
	}
	if _, err := json.Marshal(p.ExpiresAt); err != nil {
		t.Errorf("the stored expiry does not print: %v", err)
	}
	k, _, err := s.AddAPIToken(ctx, NewAPIToken{Name: "ci", Role: RoleOwner, ExpiresAt: last})
	if err != nil || !k.ExpiresAt.Equal(last) {
		t.Fatalf("a token expiring in the last second of 9999 = %+v, %v", k, err)
	}
}
