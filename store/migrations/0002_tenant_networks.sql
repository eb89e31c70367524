-- 0002: tenants as isolated networks -- peer groups, site connectors and their LAN prefixes,
-- per-tenant routes and policy text, the split-tunnel setting, and the change counter.
--
-- Addresses of prefixes are BLOBs in network byte order, 4 bytes for IPv4 and 16 for IPv6,
-- with the prefix length in bits beside them. Their CHECKs refuse host bits, the bits past
-- the prefix length (so 10.10.0.1/24 cannot be stored, only 10.10.0.0/24), by looking at
-- hex(addr): the nibble holding the boundary may only have its high bits set, every nibble
-- after it must be 0. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are refused: IPv4 is stored as 4 bytes.
--
-- Enforced in Go only, inside the one write transaction of each change: at most 32 groups
-- per peer, 1-64 prefixes per site, no site prefix overlapping the overlay networks, and no
-- two sites of one tenant with overlapping prefixes (the schema refuses the same network
-- address twice in a tenant, the commonest overlap).

-- Split tunnel: client configs of the tenant's peers list only its routes as AllowedIPs.
ALTER TABLE tenants ADD COLUMN split_tunnel INTEGER NOT NULL DEFAULT 0
    CHECK (split_tunnel IN (0, 1));

-- The parent key of sites' (peer_id, tenant_id): a site belongs to its peer's tenant.
CREATE UNIQUE INDEX peers_id_tenant ON peers (id, tenant_id);

-- The groups a peer belongs to. Names follow the peer-name rule; a group exists while a peer
-- is in it.
CREATE TABLE peer_groups (
    peer_id INTEGER NOT NULL REFERENCES peers (id) ON DELETE CASCADE,
    name    TEXT    NOT NULL
                    CHECK (length(name) BETWEEN 1 AND 64
                           AND name GLOB '[A-Za-z0-9]*'
                           AND name NOT GLOB '*[^A-Za-z0-9._-]*'),
    PRIMARY KEY (peer_id, name)
) STRICT, WITHOUT ROWID;

-- A site: a named network behind one peer of the tenant, its connector. At most one site per
-- peer; names are unique within the tenant and follow the peer-name rule.
CREATE TABLE sites (
    peer_id   INTEGER NOT NULL PRIMARY KEY,
    tenant_id INTEGER NOT NULL,
    name      TEXT    NOT NULL
                      CHECK (length(name) BETWEEN 1 AND 64
                             AND name GLOB '[A-Za-z0-9]*'
                             AND name NOT GLOB '*[^A-Za-z0-9._-]*'),
    UNIQUE (tenant_id, name),
    FOREIGN KEY (peer_id, tenant_id) REFERENCES peers (id, tenant_id) ON DELETE CASCADE
) STRICT;

-- The LAN prefixes of a site. A network address appears once per tenant; two tenants may
-- both use 10.10.0.0/24, each for its own site. Site prefixes are never /0.
CREATE TABLE site_prefixes (
    tenant_id INTEGER NOT NULL,
    site      TEXT    NOT NULL,
    addr      BLOB    NOT NULL
                      CHECK (length(addr) IN (4, 16)
                             AND NOT (length(addr) = 16
                                      AND substr(addr, 1, 12) = x'00000000000000000000ffff')),
    bits      INTEGER NOT NULL CHECK (bits BETWEEN 1 AND length(addr) * 8),
    PRIMARY KEY (tenant_id, site, addr),
    UNIQUE (tenant_id, addr),
    FOREIGN KEY (tenant_id, site) REFERENCES sites (tenant_id, name)
        ON DELETE CASCADE ON UPDATE CASCADE,
    CHECK (bits = length(addr) * 8
           OR (substr(hex(addr), bits / 4 + 1, 1)
                   GLOB CASE bits % 4 WHEN 0 THEN '0' WHEN 1 THEN '[08]'
                                      WHEN 2 THEN '[048C]' ELSE '[02468ACE]' END
               AND substr(hex(addr), bits / 4 + 2) NOT GLOB '*[^0]*'))
) STRICT, WITHOUT ROWID;

-- The routing table of a tenant: prefix -> exit. An exit is the internet (the node's exit)
-- or one of the tenant's sites. A site used by a route can be neither removed nor renamed.
CREATE TABLE routes (
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    addr       BLOB    NOT NULL
                       CHECK (length(addr) IN (4, 16)
                              AND NOT (length(addr) = 16
                                       AND substr(addr, 1, 12) = x'00000000000000000000ffff')),
    bits       INTEGER NOT NULL CHECK (bits BETWEEN 0 AND length(addr) * 8),
    via_kind   TEXT    NOT NULL CHECK (via_kind IN ('internet', 'site')),
    via_site   TEXT    CHECK ((via_kind = 'site') = (via_site IS NOT NULL)),
    created_at INTEGER NOT NULL CHECK (created_at > 0),
    PRIMARY KEY (tenant_id, addr, bits),
    FOREIGN KEY (tenant_id, via_site) REFERENCES sites (tenant_id, name)
        ON DELETE RESTRICT ON UPDATE RESTRICT,
    CHECK (bits = length(addr) * 8
           OR (substr(hex(addr), bits / 4 + 1, 1)
                   GLOB CASE bits % 4 WHEN 0 THEN '0' WHEN 1 THEN '[08]'
                                      WHEN 2 THEN '[048C]' ELSE '[02468ACE]' END
               AND substr(hex(addr), bits / 4 + 2) NOT GLOB '*[^0]*'))
) STRICT, WITHOUT ROWID;

CREATE INDEX routes_site ON routes (tenant_id, via_site);

-- Every tenant starts with the default routes to the internet; the existing ones had them
-- implicitly since they were created.
INSERT INTO routes (tenant_id, addr, bits, via_kind, via_site, created_at)
    SELECT id, zeroblob(4), 0, 'internet', NULL, created_at FROM tenants
    UNION ALL
    SELECT id, zeroblob(16), 0, 'internet', NULL, created_at FROM tenants;

-- The policy text of a tenant, verbatim as the admin wrote it (the firewall package parses
-- it). No row: no policy was ever set.
CREATE TABLE policies (
    tenant_id  INTEGER NOT NULL PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    source     TEXT    NOT NULL CHECK (octet_length(source) <= 4194304),
    updated_at INTEGER NOT NULL CHECK (updated_at > 0)
) STRICT;

-- One row counting committed changes, so that readers can tell cheaply whether anything
-- changed since they last looked. It only grows and cannot be deleted.
CREATE TABLE generation (
    id    INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL CHECK (value >= 1)
) STRICT;

INSERT INTO generation (id, value) VALUES (1, 1);

CREATE TRIGGER generation_only_grows BEFORE UPDATE ON generation
    WHEN NEW.value <= OLD.value OR NEW.id != OLD.id
BEGIN
    SELECT RAISE(ABORT, 'generation only grows');
END;

CREATE TRIGGER generation_is_kept BEFORE DELETE ON generation
BEGIN
    SELECT RAISE(ABORT, 'generation cannot be deleted');
END;
