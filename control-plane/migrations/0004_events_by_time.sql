-- Event retention deletes an organization's events older than its plan
-- keeps: by time, not id (ids are not in time order across nodes).
CREATE INDEX events_by_time ON events (create_time);
