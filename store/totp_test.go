package store

import (
	"context"
	"strings"
	"testing"
)

func TestTOTPSecrets(t *testing.T) {
	ctx := context.Background()
	s, _ := openClocked(t)
	a := mustAdmin(t, s, "root", RoleOwner, "")
	b := mustAdmin(t, s, "bob", RoleViewer, "")
	secret := []byte("12345678901234567890")

	_, err := s.AdminTOTPSecret(ctx, a.ID, false)
	wantErr(t, err, ErrNotFound, "no TOTP secret")
	err = s.EnableAdminTOTP(ctx, a.ID, 1)
	wantErr(t, err, ErrNotFound, "no TOTP enrolment is pending")
	wantErr(t, s.SetAdminTOTPPending(ctx, a.ID, secret[:10]), ErrInvalid, "20 bytes")
	if err := s.SetAdminTOTPPending(ctx, a.ID, secret); err != nil {
		t.Fatal(err)
	}
	if got, err := s.AdminTOTPSecret(ctx, a.ID, true); err != nil || string(got) != string(secret) {
		t.Fatalf("pending secret = %q, %v", got, err)
	}
	var sealed []byte
	if err := s.db.QueryRowContext(ctx, "SELECT totp_pending_enc FROM admins WHERE id = ?", a.ID).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), string(secret)) {
		t.Fatal("the TOTP secret is stored in the clear")
	}
	if err := s.EnableAdminTOTP(ctx, a.ID, 1000); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Admin(ctx, "root"); !got.TOTPEnabled {
		t.Error("TOTP not enabled")
	}
	if got, err := s.AdminTOTPSecret(ctx, a.ID, false); err != nil || string(got) != string(secret) {
		t.Fatalf("secret = %q, %v", got, err)
	}

	// The step that confirmed the enrolment and earlier ones are used up.
	for _, tc := range []struct {
		step int64
		want bool
	}{{999, false}, {1000, false}, {1001, true}, {1001, false}, {1003, true}, {1002, false}} {
		if ok, err := s.UseAdminTOTPStep(ctx, a.ID, tc.step); ok != tc.want || err != nil {
			t.Errorf("UseAdminTOTPStep(%d) = %v, %v; want %v", tc.step, ok, err, tc.want)
		}
	}

	// A sealed secret moved to another admin's row does not open.
	if _, err := s.db.ExecContext(ctx, "UPDATE admins SET totp_secret_enc = (SELECT totp_secret_enc FROM admins WHERE id = ?) WHERE id = ?", a.ID, b.ID); err != nil {
		t.Fatal(err)
	}
	_, err = s.AdminTOTPSecret(ctx, b.ID, false)
	wantErr(t, err, ErrInvalid, "cannot be decrypted")

	if got, err := s.DisableAdminTOTP(ctx, "root"); err != nil || got.TOTPEnabled {
		t.Fatalf("DisableAdminTOTP = %+v, %v", got, err)
	}
	_, err = s.AdminTOTPSecret(ctx, a.ID, false)
	wantErr(t, err, ErrNotFound, "no TOTP secret")
}

// TestSchemaRefusesBadAuthRows writes rows of the auth tables with raw SQL to prove the
