-- The audit notary (docs/audit.md): one leaf per event in commit order, the hash of every
-- full subtree once it is complete (so proofs take O(log n) reads), the signed checkpoints
-- and the notary's place in the store. Level 0 of the tree is `audit_leaves`.
CREATE TABLE audit_leaves
(
    leaf_index bigint PRIMARY KEY,
    position   bigint NOT NULL UNIQUE,
    leaf_hash  bytea  NOT NULL
);

CREATE TABLE audit_nodes
(
    level integer NOT NULL CHECK (level > 0),
    idx   bigint  NOT NULL,
    hash  bytea   NOT NULL,
    PRIMARY KEY (level, idx)
);

CREATE TABLE audit_checkpoints
(
    tree_size bigint PRIMARY KEY,
    root_hash bytea       NOT NULL,
    note      text        NOT NULL,
    signed_at timestamptz NOT NULL
);

CREATE TABLE audit_notary
(
    name      text PRIMARY KEY,
    tx        bigint NOT NULL,
    position  bigint NOT NULL,
    tree_size bigint NOT NULL
);

-- The audit API filters by correlation and actor.
CREATE INDEX events_correlation ON events ((metadata->>'correlation_id'), position);
CREATE INDEX events_actor ON events ((metadata->>'actor'), position);
