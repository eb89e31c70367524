-- 0005: CHECKs that every SQLite popgate's operators have understands, so that Debian 12's
-- sqlite3 (3.40) can check and read the database: 0002 measured the policy text with
-- octet_length(), which SQLite has only since 3.43 ("unknown function: octet_length()" in
-- PRAGMA integrity_check). length(CAST(x AS BLOB)) is the same number of bytes.
--
-- SQLite cannot change a CHECK in place: the table is rebuilt and its rows copied. Nothing
-- refers to policies, and it has no triggers or indexes of its own.

CREATE TABLE policies_0005 (
    tenant_id  INTEGER NOT NULL PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    source     TEXT    NOT NULL CHECK (length(CAST(source AS BLOB)) <= 4194304),
    updated_at INTEGER NOT NULL CHECK (updated_at > 0)
) STRICT;

INSERT INTO policies_0005 (tenant_id, source, updated_at)
    SELECT tenant_id, source, updated_at FROM policies;

DROP TABLE policies;

ALTER TABLE policies_0005 RENAME TO policies;
