-- 0013: traffic history (issue 16). What peers sent (rx: received by the nodes) and were
-- sent (tx), summed over every node, as the controller samples it from the nodes' reports:
-- per tenant by minute, per peer by 5 minutes. Only buckets with traffic have a row. The
-- controller adds to a bucket once a minute and deletes, in the same transaction, the
-- buckets older than their history keeps (7 days per tenant, 48 hours per peer): the
-- tables stay bounded by tenants x 10,080 and peers x 576 rows. Not desired network state:
-- writing it advances no generation. A tenant's or peer's history goes with it.
-- at is the bucket's start (microseconds since the epoch, like every time here), a whole
-- minute or 5 minutes.

CREATE TABLE tenant_traffic (
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    at         INTEGER NOT NULL CHECK (at > 0 AND at % 60000000 = 0),
    rx_bytes   INTEGER NOT NULL CHECK (rx_bytes >= 0),
    tx_bytes   INTEGER NOT NULL CHECK (tx_bytes >= 0),
    rx_packets INTEGER NOT NULL CHECK (rx_packets >= 0),
    tx_packets INTEGER NOT NULL CHECK (tx_packets >= 0),
    CHECK (rx_bytes > 0 OR tx_bytes > 0 OR rx_packets > 0 OR tx_packets > 0),
    PRIMARY KEY (tenant_id, at)
) STRICT, WITHOUT ROWID;
-- The pruning deletes by age.
CREATE INDEX tenant_traffic_at ON tenant_traffic (at);

CREATE TABLE peer_traffic (
    peer_id    INTEGER NOT NULL REFERENCES peers (id) ON DELETE CASCADE,
    at         INTEGER NOT NULL CHECK (at > 0 AND at % 300000000 = 0),
    rx_bytes   INTEGER NOT NULL CHECK (rx_bytes >= 0),
    tx_bytes   INTEGER NOT NULL CHECK (tx_bytes >= 0),
    rx_packets INTEGER NOT NULL CHECK (rx_packets >= 0),
    tx_packets INTEGER NOT NULL CHECK (tx_packets >= 0),
    CHECK (rx_bytes > 0 OR tx_bytes > 0 OR rx_packets > 0 OR tx_packets > 0),
    PRIMARY KEY (peer_id, at)
) STRICT, WITHOUT ROWID;
CREATE INDEX peer_traffic_at ON peer_traffic (at);
