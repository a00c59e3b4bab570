DROP TABLE job_events;
DROP TABLE leaderboard;
DROP TABLE workers;
DROP TABLE jobs;
