-- Schema version 4: an administrator can lock an account (storage.User
-- LockedAt). NULL while it is not locked. A node of the previous release
-- ignores the column during a rolling upgrade (it lets a locked account
-- log in until it is upgraded).
ALTER TABLE users ADD COLUMN locked_at timestamptz;
