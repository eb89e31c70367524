-- 0003: who administers popgate -- admins, their browser sessions and API tokens --, the audit
-- log of what they did, one-time links to download a peer's config, and peer expiry.
--
-- No secret is stored in the clear: passwords as argon2id hashes in PHC string form
-- ($argon2id$v=19$m=...,t=...,p=...$salt$hash); session, API token and download link
-- secrets as the SHA-256 of the secret (each is 32 random bytes, so a plain hash is enough);
-- TOTP secrets sealed with the key file like private keys (XChaCha20-Poly1305: version byte
-- 0x01, 24-byte nonce, 20-byte secret, 16-byte tag, the admin's id in the additional data).
--
-- None of these tables is desired network state: writing them does not advance the
-- generation.

-- From expires_at on, the peer is treated like a disabled one. NULL: it never expires.
ALTER TABLE peers ADD COLUMN expires_at INTEGER CHECK (expires_at IS NULL OR expires_at > 0);

-- Admin and API token names: 1-64 lower-case letters, digits, '.', '_', '@' and '-',
-- starting with a letter or digit.
--
-- role: owner (everything), tenant_admin (one tenant, tenant_id required), viewer (read-only;
-- every tenant, or one when tenant_id is set). An admin of a removed tenant goes with it.
-- failed_signins counts failed sign-ins since the last success; locked_until (0: not locked)
-- refuses sign-ins until then. totp_last_step is the last TOTP time step used, so a code is
-- accepted once. totp_pending_enc holds a secret being enrolled until a code confirms it.
CREATE TABLE admins (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT    NOT NULL UNIQUE
                             CHECK (length(name) BETWEEN 1 AND 64
                                    AND name GLOB '[a-z0-9]*'
                                    AND name NOT GLOB '*[^a-z0-9._@-]*'),
    password_hash    TEXT    NOT NULL
                             CHECK (length(password_hash) <= 256
                                    AND password_hash GLOB '$argon2id$v=19$m=*,t=*,p=*$?*$?*'),
    role             TEXT    NOT NULL CHECK (role IN ('owner', 'tenant_admin', 'viewer')),
    tenant_id        INTEGER REFERENCES tenants (id) ON DELETE CASCADE,
    totp_secret_enc  BLOB    CHECK (totp_secret_enc IS NULL
                                    OR (length(totp_secret_enc) = 61
                                        AND substr(totp_secret_enc, 1, 1) = x'01')),
    totp_pending_enc BLOB    CHECK (totp_pending_enc IS NULL
                                    OR (length(totp_pending_enc) = 61
                                        AND substr(totp_pending_enc, 1, 1) = x'01')),
    totp_last_step   INTEGER NOT NULL DEFAULT 0 CHECK (totp_last_step >= 0),
    failed_signins   INTEGER NOT NULL DEFAULT 0 CHECK (failed_signins >= 0),
    locked_until     INTEGER NOT NULL DEFAULT 0 CHECK (locked_until >= 0),
    disabled         INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at       INTEGER NOT NULL CHECK (created_at > 0),
    password_set_at  INTEGER NOT NULL CHECK (password_set_at > 0),
    last_signin_at   INTEGER CHECK (last_signin_at IS NULL OR last_signin_at > 0),
    CHECK (CASE role WHEN 'owner' THEN tenant_id IS NULL
                     WHEN 'tenant_admin' THEN tenant_id IS NOT NULL
                     ELSE 1 END)
) STRICT;

CREATE INDEX admins_tenant ON admins (tenant_id) WHERE tenant_id IS NOT NULL;

-- A signed-in browser. The cookie holds the secret; the row its SHA-256. A session ends at
-- expires_at (absolute) or after an idle time since last_seen that the web server decides.
CREATE TABLE sessions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash  BLOB    NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    admin_id    INTEGER NOT NULL REFERENCES admins (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL CHECK (created_at > 0),
    last_seen   INTEGER NOT NULL CHECK (last_seen >= created_at),
    expires_at  INTEGER NOT NULL CHECK (expires_at > created_at),
    remote_addr TEXT    NOT NULL CHECK (length(remote_addr) <= 64),
    user_agent  TEXT    NOT NULL CHECK (length(user_agent) <= 256)
) STRICT;

CREATE INDEX sessions_admin ON sessions (admin_id);

-- A bearer token of the JSON API ("pgt_" and 43 characters of base64url), scoped like an
-- admin's role. last_used and expires_at: NULL for never.
CREATE TABLE api_tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL UNIQUE
                       CHECK (length(name) BETWEEN 1 AND 64
                              AND name GLOB '[a-z0-9]*'
                              AND name NOT GLOB '*[^a-z0-9._@-]*'),
    token_hash BLOB    NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    role       TEXT    NOT NULL CHECK (role IN ('owner', 'tenant_admin', 'viewer')),
    tenant_id  INTEGER REFERENCES tenants (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL CHECK (created_at > 0),
    last_used  INTEGER CHECK (last_used IS NULL OR last_used > 0),
    expires_at INTEGER CHECK (expires_at IS NULL OR expires_at > created_at),
    CHECK (CASE role WHEN 'owner' THEN tenant_id IS NULL
                     WHEN 'tenant_admin' THEN tenant_id IS NOT NULL
                     ELSE 1 END)
) STRICT;

CREATE INDEX api_tokens_tenant ON api_tokens (tenant_id) WHERE tenant_id IS NOT NULL;

-- Who did what, when, from where. tenant is the name of the tenant the action concerned (NULL:
-- none), kept as text so that entries outlive the tenant. Rows are never changed or deleted.
CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL CHECK (at > 0),
    actor  TEXT    NOT NULL CHECK (length(actor) BETWEEN 1 AND 128),
    remote TEXT    NOT NULL CHECK (length(remote) <= 64),
    tenant TEXT    CHECK (tenant IS NULL OR length(tenant) BETWEEN 1 AND 32),
    action TEXT    NOT NULL CHECK (length(action) BETWEEN 1 AND 64),
    target TEXT    NOT NULL CHECK (length(target) <= 256),
    detail TEXT    NOT NULL CHECK (length(detail) <= 1024)
) STRICT;

CREATE INDEX audit_log_at ON audit_log (at, id);
CREATE INDEX audit_log_tenant ON audit_log (tenant, at, id) WHERE tenant IS NOT NULL;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

-- A one-time link to download a peer's config: the link holds the secret, the row its
-- SHA-256. used_at is set by the one download it allows.
CREATE TABLE download_links (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash BLOB    NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    peer_id    INTEGER NOT NULL,
    tenant_id  INTEGER NOT NULL,
    created_by TEXT    NOT NULL CHECK (length(created_by) BETWEEN 1 AND 128),
    created_at INTEGER NOT NULL CHECK (created_at > 0),
    expires_at INTEGER NOT NULL CHECK (expires_at > created_at),
    used_at    INTEGER CHECK (used_at IS NULL OR used_at > 0),
    FOREIGN KEY (peer_id, tenant_id) REFERENCES peers (id, tenant_id) ON DELETE CASCADE
) STRICT;

CREATE INDEX download_links_peer ON download_links (peer_id, tenant_id);
