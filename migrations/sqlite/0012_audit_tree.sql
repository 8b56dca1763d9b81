-- The audit notary (docs/audit.md): one leaf per event in commit order, the hash of every
-- full subtree once it is complete (so proofs take O(log n) reads), the signed checkpoints
-- and the notary's place in the store. Level 0 of the tree is `audit_leaves`.
CREATE TABLE audit_leaves
(
    leaf_index INTEGER PRIMARY KEY,
    position   INTEGER NOT NULL UNIQUE,
    leaf_hash  BLOB    NOT NULL
);

CREATE TABLE audit_nodes
(
    level INTEGER NOT NULL CHECK (level > 0),
    idx   INTEGER NOT NULL,
    hash  BLOB    NOT NULL,
    PRIMARY KEY (level, idx)
);

CREATE TABLE audit_checkpoints
(
    tree_size INTEGER PRIMARY KEY,
    root_hash BLOB NOT NULL,
    note      TEXT NOT NULL,
    signed_at TEXT NOT NULL
);

CREATE TABLE audit_notary
(
    name      TEXT PRIMARY KEY,
    tx        INTEGER NOT NULL,
    position  INTEGER NOT NULL,
    tree_size INTEGER NOT NULL
);

-- The audit API filters by correlation and actor.
CREATE INDEX events_correlation ON events (json_extract(metadata, '$.correlation_id'), position);
CREATE INDEX events_actor ON events (json_extract(metadata, '$.actor'), position);
