-- Purging retired runs looks them up by `retired_at` every minute; without
-- an index that is a scan of every run ever made. Partial: only retired
-- runs are in it.
CREATE INDEX runs_retired ON runs (retired_at) WHERE retired_at IS NOT NULL;
