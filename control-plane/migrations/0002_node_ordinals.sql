-- Each node's place in the fleet, put in its event ids (SPEC §7): unique,
-- assigned on the node's first sync, kept for its id.
ALTER TABLE nodes ADD COLUMN ordinal BIGINT;
CREATE UNIQUE INDEX nodes_ordinal ON nodes (ordinal);
