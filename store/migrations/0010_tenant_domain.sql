-- 0010: a tenant's DNS domain: its peers are <peer>.<domain> at the in-tunnel resolver. NULL:
-- the default, <tenant>.internal. Lower case, without the final dot. Desired network state:
-- writing it advances the generation.
ALTER TABLE tenants ADD COLUMN domain TEXT
    CHECK (domain IS NULL OR (length(domain) BETWEEN 1 AND 253 AND domain = lower(domain)));
CREATE UNIQUE INDEX tenants_domain ON tenants (domain) WHERE domain IS NOT NULL;
