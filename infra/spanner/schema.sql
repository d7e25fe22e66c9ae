-- The Spanner schema of redis-spanner: the outbox and the relay's leases, nothing else.
-- `redis-spanner provision` applies every statement whose table or index does not exist yet, to a
-- new database or to one that already holds a service's own tables (which it never touches).
-- Statements end with a semicolon; comments start with "--".

-- One row per changed business row, written in the same read-write transaction as the change.
-- Shard leads the key so concurrent writers spread over splits instead of appending to one;
-- EventId is a random UUID minted by the producer. The relay deletes a row once Pub/Sub holds it.
-- TraceParent (optional) is the W3C traceparent of the writer's span; the relay forwards it as
-- the message attribute "traceparent". A database made before it existed needs
--   ALTER TABLE Outbox ADD COLUMN TraceParent STRING(55)
CREATE TABLE Outbox (
  Shard INT64 NOT NULL,
  EventId STRING(64) NOT NULL,
  EventType STRING(64) NOT NULL,
  TableName STRING(128) NOT NULL,
  KeyJson STRING(MAX) NOT NULL,
  Payload STRING(MAX),
  SchemaVersion INT64 NOT NULL,
  CommitTs TIMESTAMP NOT NULL OPTIONS (allow_commit_timestamp = true),
  TraceParent STRING(55),
  CONSTRAINT OutboxShardInRange CHECK (Shard >= 0 AND Shard < 16),
) PRIMARY KEY (Shard, EventId);

-- Outbox rows the relay cannot turn into a message (malformed JSON, an unknown event type, a
-- NULL where a value is required, a wire form over Pub/Sub's limit). The relay copies the row
-- here with its reason and deletes it from Outbox in one read-write transaction; columns are
-- nullable so any row can be kept as it was written. `redis-spanner outbox quarantine` lists them.
CREATE TABLE OutboxQuarantine (
  Shard INT64 NOT NULL,
  EventId STRING(64) NOT NULL,
  EventType STRING(64),
  TableName STRING(128),
  KeyJson STRING(MAX),
  Payload STRING(MAX),
  SchemaVersion INT64,
  CommitTs TIMESTAMP,
  Reason STRING(1024) NOT NULL,
  QuarantinedAt TIMESTAMP NOT NULL,
) PRIMARY KEY (Shard, EventId);

-- A relay publishes a shard only while it holds that shard's lease.
CREATE TABLE OutboxLease (
  Shard INT64 NOT NULL,
  Owner STRING(64) NOT NULL,
  ExpiresAt TIMESTAMP NOT NULL,
) PRIMARY KEY (Shard);

-- Live relays announce themselves here, so each takes a fair share of the shards.
CREATE TABLE OutboxRelay (
  Owner STRING(64) NOT NULL,
  ExpiresAt TIMESTAMP NOT NULL,
) PRIMARY KEY (Owner);

-- One row per operator action (dlq replay and purge, verify --repair, rewarm, provision): who
-- did it, what it acted on, when, and how it ended. Written by the command itself once it ends,
-- failed ones included; `redis-spanner audit` lists them. Rows are never updated. A database
-- Terraform created before this table gets it through var.extra_ddl (see terraform/spanner.tf).
CREATE TABLE AuditLog (
  AuditId STRING(36) NOT NULL,
  RecordedAt TIMESTAMP NOT NULL OPTIONS (allow_commit_timestamp = true),
  Principal STRING(320) NOT NULL,
  Action STRING(64) NOT NULL,
  Details STRING(MAX) NOT NULL,
  Outcome STRING(16) NOT NULL,
  Error STRING(MAX),
) PRIMARY KEY (AuditId);
