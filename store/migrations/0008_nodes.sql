-- 0008: many nodes (issue 13). On a controller: the nodes that joined it and the one-time
-- tokens they join with. On a joined node: its membership (which controller it belongs to)
-- and the last desired state it applied, kept so that it serves on while the controller is
-- away (fail static). A region is a name here, not a reference: the regions table is
-- another migration's, and a node's region is checked when its token is made.

CREATE TABLE join_tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    -- SHA-256 of the token's 32-byte secret; the secret itself is only in the token.
    secret_hash BLOB    NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    roles       TEXT    NOT NULL CHECK (roles IN ('pop', 'exit', 'pop,exit')),
    region      TEXT    NOT NULL DEFAULT '' CHECK (length(region) <= 32),
    -- name, when not '', is the only name a node may join with.
    name        TEXT    NOT NULL DEFAULT ''
                        CHECK (name = '' OR (length(name) <= 32 AND name GLOB '[a-z0-9]*'
                                             AND name NOT GLOB '*[^a-z0-9-]*')),
    created_by  TEXT    NOT NULL CHECK (length(created_by) BETWEEN 1 AND 128),
    created_at  INTEGER NOT NULL CHECK (created_at > 0),
    expires_at  INTEGER NOT NULL CHECK (expires_at > created_at),
    used_at     INTEGER CHECK (used_at IS NULL OR used_at > 0),
    -- used_by names the node that joined with it; it stays after the node is removed.
    used_by     TEXT    CHECK ((used_by IS NULL) = (used_at IS NULL))
) STRICT;

CREATE TABLE nodes (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    name                TEXT    NOT NULL UNIQUE
                                CHECK (length(name) BETWEEN 1 AND 32 AND name GLOB '[a-z0-9]*'
                                       AND name NOT GLOB '*[^a-z0-9-]*'),
    roles               TEXT    NOT NULL CHECK (roles IN ('pop', 'exit', 'pop,exit')),
    region              TEXT    NOT NULL DEFAULT '' CHECK (length(region) <= 32),
    -- SHA-256 of the node certificate's SubjectPublicKeyInfo: what authenticates it.
    cert_pin            BLOB    NOT NULL UNIQUE CHECK (length(cert_pin) = 32),
    backbone_endpoint   TEXT    NOT NULL DEFAULT '' CHECK (length(backbone_endpoint) <= 300),
    backbone_public_key BLOB    CHECK (backbone_public_key IS NULL OR length(backbone_public_key) = 32),
    version             TEXT    NOT NULL DEFAULT '' CHECK (length(version) <= 64),
    joined_at           INTEGER NOT NULL CHECK (joined_at > 0),
    last_seen_at        INTEGER CHECK (last_seen_at IS NULL OR last_seen_at > 0),
    applied_generation  INTEGER NOT NULL DEFAULT 0 CHECK (applied_generation >= 0),
    -- last_report is the node's last report (JSON), kept small by the controller.
    last_report         TEXT    NOT NULL DEFAULT '' CHECK (length(last_report) <= 16384)
) STRICT;

CREATE TABLE membership (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    controller_addr TEXT    NOT NULL CHECK (length(controller_addr) BETWEEN 1 AND 300),
    controller_pin  BLOB    NOT NULL CHECK (length(controller_pin) = 32),
    node_name       TEXT    NOT NULL CHECK (length(node_name) BETWEEN 1 AND 32),
    roles           TEXT    NOT NULL CHECK (roles IN ('pop', 'exit', 'pop,exit')),
    region          TEXT    NOT NULL DEFAULT '' CHECK (length(region) <= 32),
    joined_at       INTEGER NOT NULL CHECK (joined_at > 0),
    -- removed_at is set when the controller removed the node: it serves nothing until it
    -- joins again.
    removed_at      INTEGER CHECK (removed_at IS NULL OR removed_at > 0)
) STRICT;

CREATE TABLE desired_cache (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL CHECK (generation >= 0),
    -- sealed with the key file's secret: it holds the region's private key.
    sealed     BLOB    NOT NULL CHECK (length(sealed) > 0),
    saved_at   INTEGER NOT NULL CHECK (saved_at > 0)
) STRICT;
