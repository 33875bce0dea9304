-- E-mail notifications to organization admins (SPEC §8): queued when
-- their platform event is fanned out (recipients as the organization had
-- them then, the event's data to write the mail from), and sent by the
-- mailer with retries, so a mail server's outage delays mail and nothing
-- else.
CREATE TABLE mails (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    recipients TEXT NOT NULL,
    data TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    next_attempt_time BIGINT NOT NULL,
    claimed_until BIGINT NOT NULL,
    create_time BIGINT NOT NULL
);
CREATE INDEX mails_due ON mails (status, next_attempt_time);
