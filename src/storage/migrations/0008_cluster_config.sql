-- What decides a pipeline's windows in a cluster (window size, allowed
-- lateness, each contract's subject_by), as the first instance of the
-- running cluster wrote it: an instance that differs refuses to start. The
-- contract versions are kept too, for a warning only (a version is rolled
-- out one instance at a time).
CREATE TABLE cluster_config (
    pipeline TEXT PRIMARY KEY,
    judged TEXT NOT NULL,
    versions TEXT NOT NULL,
    instance TEXT NOT NULL
);
