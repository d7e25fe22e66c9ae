-- The change-stream relay's own tables, applied by `redis-spanner provision` only when
-- REDIS_SPANNER_SOURCE=changestream. The change stream itself is declared from the catalog's
-- tables (CREATE CHANGE STREAM <REDIS_SPANNER_CHANGE_STREAM> FOR <tables>).

-- One row per change-stream partition: its parents, where reading resumes, and who reads it.
-- Token '' is the initial query (partition_token NULL), whose records are the first partitions.
-- A partition is read only once every parent is FINISHED; Checkpoint moves only after Pub/Sub
-- holds every event up to it.
CREATE TABLE ChangeStreamPartition (
  StreamName STRING(128) NOT NULL,
  Token STRING(4096) NOT NULL,
  Parents ARRAY<STRING(4096)> NOT NULL,
  StartTs TIMESTAMP NOT NULL,
  Checkpoint TIMESTAMP NOT NULL,
  Finished BOOL NOT NULL,
  Owner STRING(64),
  LeaseExpiresAt TIMESTAMP,
) PRIMARY KEY (StreamName, Token);

-- Live change-stream relays announce themselves here, so each takes a fair share.
CREATE TABLE ChangeStreamReader (
  StreamName STRING(128) NOT NULL,
  Owner STRING(64) NOT NULL,
  ExpiresAt TIMESTAMP NOT NULL,
) PRIMARY KEY (StreamName, Owner);
