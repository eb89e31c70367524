-- 0011: events (issue 16): state changes an operator wants to hear of (a backbone link down
-- and back, a route's exit changed, a node offline and back, a peer about to expire), as
-- opposed to the changes admins make (the audit log). The controller records its own and
-- those its nodes report, keeps the newest 100,000 of the last 30 days (the store prunes),
-- and sends each to the operator's webhook, when one is set.

CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    -- at is when it happened (a node's events: its clock, corrected by its offset).
    at      INTEGER NOT NULL CHECK (at > 0),
    kind    TEXT    NOT NULL CHECK (length(kind) BETWEEN 1 AND 64 AND kind GLOB '[a-z]*'
                                    AND kind NOT GLOB '*[^a-z0-9._-]*'),
    -- node is the node it happened at, or the controller's name for its own.
    node    TEXT    NOT NULL CHECK (length(node) <= 64),
    -- tenant is the tenant it concerns (its name then); NULL: the network's.
    tenant  TEXT    CHECK (tenant IS NULL OR length(tenant) BETWEEN 1 AND 64),
    subject TEXT    NOT NULL CHECK (length(subject) <= 256),
    message TEXT    NOT NULL CHECK (length(message) <= 1024),
    -- data is a JSON object of strings, for machines (the webhook's body carries it).
    data    TEXT    NOT NULL DEFAULT '{}' CHECK (length(data) <= 4096 AND json_valid(data)
                                                 AND json_type(data) = 'object')
) STRICT;

CREATE INDEX events_at ON events (at, id);
CREATE INDEX events_tenant ON events (tenant, at, id) WHERE tenant IS NOT NULL;

-- The newest event of each node's process the controller recorded: a node numbers its
-- events from 1 at each start (boot tells its starts apart) and resends those the
-- controller may not have, which records none twice.
CREATE TABLE event_cursors (
    node_id INTEGER PRIMARY KEY REFERENCES nodes (id) ON DELETE CASCADE,
    boot    INTEGER NOT NULL,
    seq     INTEGER NOT NULL CHECK (seq >= 0)
) STRICT;

-- The operator's webhook: one URL, its secret sealed with the key file's secret (it signs
-- every delivery), and how delivery goes. Events up to sent_id are done with: delivered,
-- given up after a day of failures, or dropped from a backlog too long.
CREATE TABLE webhook (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    url             TEXT    NOT NULL CHECK (length(url) BETWEEN 8 AND 2048
                                            AND (url GLOB 'https://?*' OR url GLOB 'http://?*')),
    secret_enc      BLOB    NOT NULL CHECK (length(secret_enc) > 40),
    created_at      INTEGER NOT NULL CHECK (created_at > 0),
    sent_id         INTEGER NOT NULL DEFAULT 0 CHECK (sent_id >= 0),
    delivered       INTEGER NOT NULL DEFAULT 0 CHECK (delivered >= 0),
    failed          INTEGER NOT NULL DEFAULT 0 CHECK (failed >= 0),
    given_up        INTEGER NOT NULL DEFAULT 0 CHECK (given_up >= 0),
    dropped         INTEGER NOT NULL DEFAULT 0 CHECK (dropped >= 0),
    last_attempt_at INTEGER CHECK (last_attempt_at IS NULL OR last_attempt_at > 0),
    last_ok_at      INTEGER CHECK (last_ok_at IS NULL OR last_ok_at > 0),
    last_error      TEXT    NOT NULL DEFAULT '' CHECK (length(last_error) <= 300)
) STRICT;
