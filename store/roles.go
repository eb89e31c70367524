package store

// Roles say what an admin or an API token may do; the schema refuses others. This is their one
// home: the web UI, the API and the CLI use these values.
const (
	RoleOwner       = "owner"        // everything, every tenant
	RoleTenantAdmin = "tenant_admin" // everything within one tenant
	RoleViewer      = "viewer"       // read-only: every tenant, or one
)

// ValidateRole checks role and tenant together: role must be one of the three roles, a
// tenant admin needs a tenant, an owner may not have one. The error wraps ErrInvalid.
func ValidateRole(role, tenant string) error {
	switch role {
	case RoleOwner:
		if tenant != "" {
			return errorf(ErrInvalid, "an owner manages every tenant and cannot be limited to tenant %q: use role tenant_admin or viewer", truncate(tenant, 40))
		}
	case RoleTenantAdmin:
		if tenant == "" {
			return errorf(ErrInvalid, "a tenant admin needs a tenant: name it (--tenant T)")
		}
	case RoleViewer:
	default:
		return errorf(ErrInvalid, "role %q is unknown: use owner, tenant_admin or viewer", truncate(role, 40))
	}
	if tenant != "" {
		return ValidateTenantName(tenant)
	}
	return nil
}

// roleDetail words a role and tenant for the audit log: "role tenant_admin, tenant acme".
func roleDetail(role, tenant string) string {
	if tenant == "" {
		return "role " + role
	}
	return "role " + role + ", tenant " + tenant
}
