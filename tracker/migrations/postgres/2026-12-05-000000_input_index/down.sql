DROP INDEX jobs_by_input;
