-- 0004: fair shares -- how many flows each peer of a tenant, and the tenant as a whole, may
-- have open at once: flows through the node's exit (TCP, UDP, echo requests waiting for a
-- reply) and connections its firewall tracks. NULL: the node's default (README, "Limits and
-- abuse"). Desired network state: writing them advances the generation.
ALTER TABLE tenants ADD COLUMN max_flows_per_peer INTEGER
    CHECK (max_flows_per_peer IS NULL OR max_flows_per_peer BETWEEN 1 AND 1048576);
ALTER TABLE tenants ADD COLUMN max_flows INTEGER
    CHECK (max_flows IS NULL OR max_flows BETWEEN 1 AND 1048576);
