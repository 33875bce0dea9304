-- Event retention deletes an organization's events older than its plan
-- keeps: by organization and time, not id (ids are not in time order
-- across nodes), so a batch reads only the rows it deletes.
CREATE INDEX events_by_time ON events (organization_id, create_time);
