-- A service's own schema, not the demo's: the tables `redis-spanner provision --existing` finds
-- in a database that already holds data, and never touches. Used by README.md's adoption guide
-- and by tests/integration/test_adopt.py.

-- A composite primary key mixing STRING and INT64.
CREATE TABLE Customers (
  Region STRING(16) NOT NULL,
  CustomerId INT64 NOT NULL,
  Name STRING(64) NOT NULL,
  UpdatedAt TIMESTAMP NOT NULL OPTIONS (allow_commit_timestamp = true),
) PRIMARY KEY (Region, CustomerId);

-- An interleaved child table: a customer's orders feed one derived key.
CREATE TABLE Orders (
  Region STRING(16) NOT NULL,
  CustomerId INT64 NOT NULL,
  OrderId STRING(36) NOT NULL,
  Total INT64 NOT NULL,
) PRIMARY KEY (Region, CustomerId, OrderId),
  INTERLEAVE IN PARENT Customers ON DELETE CASCADE;

-- A primary key holding a TIMESTAMP: its rows cannot address cache keys (refused at load).
CREATE TABLE Readings (
  SensorId STRING(32) NOT NULL,
  ReadAt TIMESTAMP NOT NULL,
  Value FLOAT64,
) PRIMARY KEY (SensorId, ReadAt);
