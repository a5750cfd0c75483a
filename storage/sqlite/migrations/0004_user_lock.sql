-- Schema version 4: an administrator can lock an account (storage.User
-- LockedAt), in microseconds since the epoch; NULL while it is not locked.
ALTER TABLE users ADD COLUMN locked_at INTEGER;
