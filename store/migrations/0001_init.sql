-- 0001: tenants, their peers, and the node's settings.
--
-- Rules for every migration in this directory:
--   * Append-only: a released file is never edited; a change is the next number.
--   * Each file runs in one transaction; the runner then sets PRAGMA user_version to its number.
--   * Tables are STRICT, so a column holds only its declared type.
--   * Times are INTEGER Unix microseconds, UTC.
--   * CHECK constraints repeat the validation done in Go, so a row written by hand is refused
--     the same way. Later tables (groups, routes, policy, regions, admins) reference
--     tenants(id) and peers(id); both use AUTOINCREMENT so an id is never reused.

-- Node settings: one row per key. Keys are lower-case, dotted ("overlay.ipv6_prefix").
CREATE TABLE settings (
    key        TEXT    NOT NULL PRIMARY KEY
                       CHECK (length(key) BETWEEN 1 AND 64
                              AND key GLOB '[a-z]*'
                              AND key NOT GLOB '*[^a-z0-9._-]*'),
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL CHECK (updated_at > 0)
) STRICT;

-- One customer organisation. The name is a DNS-label-like handle: ^[a-z0-9][a-z0-9-]{0,31}$.
CREATE TABLE tenants (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL UNIQUE
                       CHECK (length(name) BETWEEN 1 AND 32
                              AND name GLOB '[a-z0-9]*'
                              AND name NOT GLOB '*[^a-z0-9-]*'),
    created_at INTEGER NOT NULL CHECK (created_at > 0)
) STRICT;

-- One client device. Its overlay addresses are global (the same in every region), so ipv4
-- and ipv6 are unique across tenants. ipv4 is the address as a 32-bit integer inside
-- 100.64.0.0/10, excluding the network address, the gateway 100.64.0.1 and the broadcast
-- address. ipv6 is 16 bytes: the installation's ULA /48 (fd00::/8), subnet 0, and an
-- interface ID whose upper 32 bits are zero and lower 32 bits are ipv4 -- so ipv6 is unique
-- exactly when ipv4 is.
-- private_key_enc is NULL when the user brought the public key; otherwise the private key
-- sealed with XChaCha20-Poly1305: version byte 0x01, 24-byte nonce, 32-byte key, 16-byte tag,
-- with the public key as additional data.
CREATE TABLE peers (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       INTEGER NOT NULL REFERENCES tenants (id) ON DELETE RESTRICT,
    name            TEXT    NOT NULL
                            CHECK (length(name) BETWEEN 1 AND 64
                                   AND name GLOB '[A-Za-z0-9]*'
                                   AND name NOT GLOB '*[^A-Za-z0-9._-]*'),
    public_key      BLOB    NOT NULL UNIQUE CHECK (length(public_key) = 32),
    private_key_enc BLOB    CHECK (private_key_enc IS NULL
                                   OR (length(private_key_enc) = 73
                                       AND substr(private_key_enc, 1, 1) = x'01')),
    ipv4            INTEGER NOT NULL UNIQUE CHECK (ipv4 BETWEEN 0x64400002 AND 0x647FFFFE),
    ipv6            BLOB    NOT NULL UNIQUE
                            CHECK (length(ipv6) = 16
                                   AND substr(ipv6, 1, 1) = x'fd'
                                   AND substr(ipv6, 7, 6) = x'000000000000'
                                   AND hex(substr(ipv6, 13, 4)) = printf('%08X', ipv4)),
    enabled         INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    created_at      INTEGER NOT NULL CHECK (created_at > 0),
    updated_at      INTEGER NOT NULL CHECK (updated_at > 0),
    -- Also the index behind "peers of a tenant, by name" and the foreign key.
    UNIQUE (tenant_id, name)
) STRICT;
