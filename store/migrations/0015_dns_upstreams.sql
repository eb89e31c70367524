-- 0015 (issue 17): a tenant's own DNS upstreams, which the in-tunnel resolver forwards its
-- queries to instead of the node's: plain DNS ("9.9.9.9:53") or DNS over TLS with the
-- server's name ("tls://dns.quad9.net@9.9.9.9:853"), tried in position order. No row: the
-- node's upstreams. Desired network state: writing them advances the generation.
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
