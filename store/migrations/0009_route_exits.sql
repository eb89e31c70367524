-- 0009: routes through exit nodes (issue 14): a route may go via an ordered list of exit
-- nodes ("exit:x1,exit:x2"). The exits are rows of route_exits that reference the nodes, so
-- that a removed node leaves every route at once (ON DELETE CASCADE); the store removes a
-- route whose last exit went. SQLite cannot change a CHECK in place: routes is rebuilt with
-- the new via kind, rows unchanged.

CREATE TABLE routes_new (
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    addr       BLOB    NOT NULL
                       CHECK (length(addr) IN (4, 16)
                              AND NOT (length(addr) = 16
                                       AND substr(addr, 1, 12) = x'00000000000000000000ffff')),
    bits       INTEGER NOT NULL CHECK (bits BETWEEN 0 AND length(addr) * 8),
    via_kind   TEXT    NOT NULL CHECK (via_kind IN ('internet', 'site', 'exit')),
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

INSERT INTO routes_new (tenant_id, addr, bits, via_kind, via_site, created_at)
    SELECT tenant_id, addr, bits, via_kind, via_site, created_at FROM routes;
DROP TABLE routes;
ALTER TABLE routes_new RENAME TO routes;
CREATE INDEX routes_site ON routes (tenant_id, via_site);

-- The exits of a route of via_kind 'exit', tried in the order of position (gaps allowed:
-- a removed node leaves one).
CREATE TABLE route_exits (
    tenant_id INTEGER NOT NULL,
    addr      BLOB    NOT NULL,
    bits      INTEGER NOT NULL,
    position  INTEGER NOT NULL CHECK (position BETWEEN 0 AND 7),
    node_id   INTEGER NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    PRIMARY KEY (tenant_id, addr, bits, position),
    UNIQUE (tenant_id, addr, bits, node_id),
    FOREIGN KEY (tenant_id, addr, bits) REFERENCES routes (tenant_id, addr, bits) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

CREATE INDEX route_exits_node ON route_exits (node_id);
