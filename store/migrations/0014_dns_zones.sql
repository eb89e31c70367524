-- 0014: a tenant's split DNS zones (issue 17): the in-tunnel resolver sends its peers'
-- queries for a name in the zone to the zone's servers, through the tenant's own routes (a
-- site, or one of its peers). Desired network state: writing it advances the generation.
-- zone is lower case without the final dot, '.' for every name. A zone's servers are tried
-- in the order of position; a tenant's zones and their servers go with it.

CREATE TABLE dns_zones (
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    zone       TEXT    NOT NULL
                       CHECK (zone = '.'
                              OR (length(zone) BETWEEN 1 AND 253 AND zone = lower(zone)
                                  AND zone NOT GLOB '*[^a-z0-9._-]*'
                                  AND zone NOT GLOB '.*' AND zone NOT GLOB '*.'
                                  AND zone NOT GLOB '*..*')),
    created_at INTEGER NOT NULL CHECK (created_at > 0),
    PRIMARY KEY (tenant_id, zone)
) STRICT, WITHOUT ROWID;

CREATE TABLE dns_zone_servers (
    tenant_id INTEGER NOT NULL,
    zone      TEXT    NOT NULL,
    position  INTEGER NOT NULL CHECK (position BETWEEN 0 AND 3),
    addr      BLOB    NOT NULL
                      CHECK (length(addr) IN (4, 16)
                             AND NOT (length(addr) = 16
                                      AND substr(addr, 1, 12) = x'00000000000000000000ffff')),
    port      INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    PRIMARY KEY (tenant_id, zone, position),
    UNIQUE (tenant_id, zone, addr, port),
    FOREIGN KEY (tenant_id, zone) REFERENCES dns_zones (tenant_id, zone) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
