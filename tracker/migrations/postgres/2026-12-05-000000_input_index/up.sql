-- Appending jobs to a running project skips inputs already present: find them by input.
CREATE INDEX jobs_by_input ON jobs (data_a);
