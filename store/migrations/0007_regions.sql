-- 0007: regions, each with a public endpoint and a WireGuard key of its own, and the regions
-- a tenant is limited to.
--
-- The controller's own region (serve's --region, default local) has private_key_enc and
-- public_key NULL: its key is the node key (setting node.private_key), so the clients of an
-- upgraded appliance keep the server key and endpoint they have. It is created when the
-- controller starts; at most one region has no key of its own. Every other region's private
-- key is sealed like a peer's (version byte 0x01, 24-byte nonce, 32-byte key, 16-byte tag),
-- with "popgate region private key v1", a NUL byte and the region's name as additional data,
-- so a key moved to another row does not open; public_key is kept beside it for listings.
--
-- Enforced in Go only: the endpoint's port is a number in 1-65535; the home region's endpoint
-- is serve's --public-endpoint.
CREATE TABLE regions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT    NOT NULL UNIQUE
                            CHECK (length(name) BETWEEN 1 AND 32
                                   AND name GLOB '[a-z0-9]*'
                                   AND name NOT GLOB '*[^a-z0-9-]*'),
    endpoint        TEXT    NOT NULL
                            CHECK (length(endpoint) BETWEEN 3 AND 261
                                   AND endpoint GLOB '?*:[0-9]*'
                                   AND endpoint NOT GLOB '*[^!-~]*'
                                   AND endpoint NOT GLOB '*[/\,="'']*'),
    private_key_enc BLOB    CHECK (private_key_enc IS NULL
                                   OR (length(private_key_enc) = 73
                                       AND substr(private_key_enc, 1, 1) = x'01')),
    public_key      BLOB    CHECK (public_key IS NULL OR length(public_key) = 32),
    created_at      INTEGER NOT NULL CHECK (created_at > 0),
    CHECK ((private_key_enc IS NULL) = (public_key IS NULL))
) STRICT;

-- At most one region uses the node key: the controller's own.
CREATE UNIQUE INDEX regions_home ON regions ((private_key_enc IS NULL)) WHERE private_key_enc IS NULL;
CREATE UNIQUE INDEX regions_public_key ON regions (public_key) WHERE public_key IS NOT NULL;

-- The regions a tenant is limited to. No row for a tenant: it is allowed in every region.
-- A region a tenant is limited to cannot be removed while the row exists (the store removes
-- the rows itself, and refuses when the region is the only one a tenant has left, which
-- would otherwise widen that tenant to every region).
CREATE TABLE tenant_regions (
    tenant_id INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    region_id INTEGER NOT NULL REFERENCES regions (id) ON DELETE RESTRICT,
    PRIMARY KEY (tenant_id, region_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX tenant_regions_region ON tenant_regions (region_id);
