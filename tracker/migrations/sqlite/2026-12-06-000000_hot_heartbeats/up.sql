-- Heartbeats only set `workers.last_seen`; indexed, each one also rewrote its index entry. Only
-- the sweep looks workers up by `last_seen`, and it reads the whole (small) table once a sweep.
DROP INDEX workers_by_last_seen;
