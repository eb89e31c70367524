-- 0012: checks (issue 16): what the operator and the tenants asked to be watched, run from
-- the PoPs, and their results at one-minute resolution.
--
-- A check is a DNS name resolved through the node's upstreams (kind dns), a URL fetched
-- (kind http), or a region's public endpoint answering a real WireGuard handshake (kind
-- handshake). Handshake checks are not configured: every region has one, made with the region
-- (the trigger below, and the INSERT for the regions that exist) and gone with it; their name
-- and target are the region's ("region:fra", its endpoint), read through region_id, so that a
-- renamed region or a changed endpoint needs no second write. tenant_id NULL: the operator's
-- check; otherwise one tenant's, which goes with its tenant.
--
-- Enforced in Go only: the target's form for its kind (a DNS name, an http(s) URL without
-- credentials), expect's (an address, a status), from_spec's terms (all, region:NAME,
-- node:NAME) and, for a tenant's check, that it reaches only public addresses.
CREATE TABLE checks (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id  INTEGER REFERENCES tenants (id) ON DELETE CASCADE,
    region_id  INTEGER UNIQUE REFERENCES regions (id) ON DELETE CASCADE,
    name       TEXT    CHECK (name IS NULL
                              OR (length(name) BETWEEN 1 AND 32 AND name GLOB '[a-z0-9]*'
                                  AND name NOT GLOB '*[^a-z0-9-]*')),
    kind       TEXT    NOT NULL CHECK (kind IN ('handshake', 'dns', 'http')),
    target     TEXT    CHECK (target IS NULL
                              OR (length(target) BETWEEN 1 AND 2048 AND target NOT GLOB '*[^!-~]*')),
    expect     TEXT    NOT NULL DEFAULT '' CHECK (length(expect) <= 64 AND expect NOT GLOB '*[^!-~]*'),
    every_s    INTEGER NOT NULL CHECK (every_s BETWEEN 10 AND 3600),
    from_spec  TEXT    NOT NULL CHECK (length(from_spec) BETWEEN 1 AND 400 AND from_spec NOT GLOB '*[^!-~]*'),
    created_at INTEGER NOT NULL CHECK (created_at > 0),
    CHECK ((kind = 'handshake') = (region_id IS NOT NULL)),
    CHECK ((kind = 'handshake') = (name IS NULL)),
    CHECK ((kind = 'handshake') = (target IS NULL)),
    CHECK (kind <> 'handshake' OR (tenant_id IS NULL AND from_spec = 'other-regions'))
) STRICT;

-- Names are unique among the operator's checks and within each tenant.
CREATE UNIQUE INDEX checks_name ON checks (ifnull(tenant_id, 0), name) WHERE name IS NOT NULL;
CREATE INDEX checks_tenant ON checks (tenant_id) WHERE tenant_id IS NOT NULL;

INSERT INTO checks (region_id, kind, every_s, from_spec, created_at)
    SELECT id, 'handshake', 60, 'other-regions', created_at FROM regions;

CREATE TRIGGER regions_handshake_check AFTER INSERT ON regions BEGIN
    INSERT INTO checks (region_id, kind, every_s, from_spec, created_at)
        VALUES (NEW.id, 'handshake', 60, 'other-regions', NEW.created_at);
END;

-- What one node saw of one check in one minute (Unix time / 60, the node's minute in the
-- controller's clock): runs that passed and failed, the median and the longest latency of
-- those that passed, and the last failure's message and the last run's answer. Rows older
-- than 7 days are pruned. node is the node's backbone ID (1 is the controller's own node,
-- a joined node's is its nodes.id + 1), not a reference: a removed node's results stay
-- until they age out.
CREATE TABLE check_results (
    check_id       INTEGER NOT NULL REFERENCES checks (id) ON DELETE CASCADE,
    minute         INTEGER NOT NULL CHECK (minute > 0),
    node           INTEGER NOT NULL CHECK (node >= 1),
    ok             INTEGER NOT NULL CHECK (ok >= 0),
    failed         INTEGER NOT NULL CHECK (failed >= 0),
    latency_p50_us INTEGER NOT NULL CHECK (latency_p50_us >= 0),
    latency_max_us INTEGER NOT NULL CHECK (latency_max_us >= latency_p50_us),
    error          TEXT    NOT NULL DEFAULT '' CHECK (length(error) <= 300),
    detail         TEXT    NOT NULL DEFAULT '' CHECK (length(detail) <= 300),
    CHECK (ok + failed > 0),
    PRIMARY KEY (check_id, minute, node)
) STRICT, WITHOUT ROWID;

-- How long each node has reported (the Network page's uptime of a PoP): its minutes.
CREATE INDEX check_results_node ON check_results (node, minute);
