-- 0015 (issue 17): a tenant's own DNS upstreams, and its DNS query log (below).
--
-- Upstreams: the resolvers the in-tunnel resolver forwards the tenant's queries to instead of
-- the node's: plain DNS ("9.9.9.9:53") or DNS over TLS with the server's name
-- ("tls://dns.quad9.net@9.9.9.9:853"), tried in position order. No row: the node's upstreams.
-- Desired network state: writing them advances the generation.
--
-- Enforced in Go only (ParseDNSUpstream): the form, and that the address is a public one (a
-- tenant must not make the PoPs reach their own networks).
CREATE TABLE dns_upstreams (
    tenant_id INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    position  INTEGER NOT NULL CHECK (position BETWEEN 1 AND 4),
    upstream  TEXT    NOT NULL CHECK (length(upstream) BETWEEN 7 AND 300 AND upstream NOT GLOB '*[^!-~]*'),
    PRIMARY KEY (tenant_id, position),
    UNIQUE (tenant_id, upstream)
) STRICT;

-- A tenant's DNS query log, on only while a row is here (desired network state: nodes log
-- the tenant's queries only then). keep_s is how long entries are kept: 1 hour to 7 days.
CREATE TABLE dns_log_settings (
    tenant_id  INTEGER PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    keep_s     INTEGER NOT NULL CHECK (keep_s BETWEEN 3600 AND 604800),
    enabled_at INTEGER NOT NULL CHECK (enabled_at > 0)
) STRICT;

-- The queries the nodes logged for the tenants whose log is on: personal data (who asked
-- for which name, when), kept for the tenant's keep_s and at most 1,000,000 per tenant (the
-- controller prunes every minute, oldest first), deleted with the log's setting or the
-- tenant. at is when the query came (the node's clock, corrected by its offset), node the
-- node's name, peer the asking peer's name ('' for a host behind a site), client its address.
CREATE TABLE dns_log (
    id         INTEGER PRIMARY KEY,
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    at         INTEGER NOT NULL CHECK (at > 0),
    node       TEXT    NOT NULL CHECK (length(node) <= 64),
    peer       TEXT    NOT NULL CHECK (length(peer) <= 64),
    client     TEXT    NOT NULL CHECK (length(client) <= 64),
    name       TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    qtype      TEXT    NOT NULL CHECK (length(qtype) BETWEEN 1 AND 16 AND qtype NOT GLOB '*[^A-Z0-9]*'),
    outcome    TEXT    NOT NULL CHECK (length(outcome) BETWEEN 1 AND 16 AND outcome NOT GLOB '*[^a-z_]*'),
    rcode      TEXT    NOT NULL CHECK (length(rcode) BETWEEN 1 AND 16 AND rcode NOT GLOB '*[^A-Z0-9]*'),
    latency_us INTEGER NOT NULL CHECK (latency_us >= 0)
) STRICT;

CREATE INDEX dns_log_tenant ON dns_log (tenant_id, at, id);

-- The newest logged query of each joined node's process the controller recorded, as
-- event_cursors: a report sent again adds nothing twice.
CREATE TABLE dns_log_cursors (
    node_id INTEGER PRIMARY KEY REFERENCES nodes (id) ON DELETE CASCADE,
    boot    INTEGER NOT NULL,
    seq     INTEGER NOT NULL CHECK (seq >= 0)
) STRICT;
