-- The demo's tables, created only by `redis-spanner demo`, `bench` and the tests (never by a
-- plain `provision`). A service's own schema takes their place: see "Adopting" in README.md.

-- Demo: one cached row per account.
CREATE TABLE Accounts (
  AccountId STRING(64) NOT NULL,
  Owner STRING(64) NOT NULL,
  Balance INT64 NOT NULL,
  UpdatedAt TIMESTAMP NOT NULL OPTIONS (allow_commit_timestamp = true),
) PRIMARY KEY (AccountId);

-- Demo: a team row, and a derived key (the member list) built from many Members rows.
CREATE TABLE Teams (
  TeamId INT64 NOT NULL,
  Name STRING(128) NOT NULL,
) PRIMARY KEY (TeamId);

CREATE TABLE Members (
  TeamId INT64 NOT NULL,
  MemberId STRING(64) NOT NULL,
  Role STRING(32) NOT NULL,
) PRIMARY KEY (TeamId, MemberId),
  INTERLEAVE IN PARENT Teams ON DELETE CASCADE;
