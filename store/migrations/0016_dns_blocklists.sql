-- 0016: a tenant's DNS blocklists (issue 17): the in-tunnel resolver answers NXDOMAIN to the
-- tenant's peers for a name a list holds, or a subdomain of it. A list comes from a URL the
-- controller fetches every every_s seconds (private_ok: an owner added it, and it may be on
-- a private address), or from a file uploaded through the API (url '', every_s 0).
--
-- The content, in gateway/blocklist's canonical form (sorted names, one a line), is kept
-- once per SHA-256 in dns_blobs: lists with the same names share it, and a blob no list
-- holds any more goes (the triggers). A joined node keeps the contents it serves in its own
-- dns_blobs, without lists (so that it blocks with its controller away).
--
-- A list is desired network state (adding, removing and new content advance the generation,
-- audited); the outcome of each fetch (checked_at, error) is bookkeeping, which does neither.
CREATE TABLE dns_blobs (
    id         INTEGER PRIMARY KEY,
    sha256     BLOB    NOT NULL UNIQUE CHECK (length(sha256) = 32),
    names      INTEGER NOT NULL CHECK (names >= 0),
    body       BLOB    NOT NULL,
    created_at INTEGER NOT NULL CHECK (created_at > 0)
) STRICT;

CREATE TABLE dns_blocklists (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 32 AND name GLOB '[a-z0-9]*'
                                       AND name NOT GLOB '*[^a-z0-9-]*'),
    url        TEXT    NOT NULL CHECK (length(url) <= 2048 AND url NOT GLOB '*[^!-~]*'),
    every_s    INTEGER NOT NULL CHECK (every_s = 0 OR every_s BETWEEN 3600 AND 604800),
    private_ok INTEGER NOT NULL CHECK (private_ok IN (0, 1)),
    sha256     BLOB    NOT NULL REFERENCES dns_blobs (sha256),
    skipped    INTEGER NOT NULL CHECK (skipped >= 0),
    updated_at INTEGER NOT NULL CHECK (updated_at > 0),
    checked_at INTEGER NOT NULL CHECK (checked_at > 0),
    error      TEXT    NOT NULL DEFAULT '' CHECK (length(error) <= 300),
    error_at   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL CHECK (created_at > 0),
    CHECK ((url = '') = (every_s = 0)),
    CHECK (url <> '' OR private_ok = 0),
    UNIQUE (tenant_id, name)
) STRICT;

CREATE INDEX dns_blocklists_sha256 ON dns_blocklists (sha256);

CREATE TRIGGER dns_blocklists_blob_gone AFTER DELETE ON dns_blocklists BEGIN
    DELETE FROM dns_blobs WHERE sha256 = OLD.sha256
        AND NOT EXISTS (SELECT 1 FROM dns_blocklists WHERE sha256 = OLD.sha256);
END;

CREATE TRIGGER dns_blocklists_blob_replaced AFTER UPDATE OF sha256 ON dns_blocklists
    WHEN OLD.sha256 <> NEW.sha256 BEGIN
    DELETE FROM dns_blobs WHERE sha256 = OLD.sha256
        AND NOT EXISTS (SELECT 1 FROM dns_blocklists WHERE sha256 = OLD.sha256);
END;
