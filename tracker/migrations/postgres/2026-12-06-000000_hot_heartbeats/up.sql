-- Heartbeats only set `workers.last_seen`. Indexed, every heartbeat wrote a new row version
-- into each of the table's four indexes and left a dead row for vacuum; unindexed, with room
-- left in each page, it is a HOT update that touches no index and is pruned in place. Only the
-- sweep looks workers up by `last_seen`, and it reads the whole (small) table once a sweep.
DROP INDEX workers_by_last_seen;
ALTER TABLE workers SET (fillfactor = 50);
