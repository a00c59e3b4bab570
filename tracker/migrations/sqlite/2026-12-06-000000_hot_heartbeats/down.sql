CREATE INDEX workers_by_last_seen ON workers (last_seen);
