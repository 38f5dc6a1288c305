-- The audit trail, partitioned by day on `at` (PostgreSQL's declarative
-- partitioning), so that retention drops whole partitions instead of
-- deleting rows. Online on a populated table: this transaction only swaps
-- names and creates empty tables (a moment under the table's lock); the
-- rows already written stay where they are, in audit_events_unpartitioned,
-- which worker 0 then proves and attaches as the partition of everything
-- before the swap without blocking writes (store/audit_partitions.py).
-- The previous release runs on: same name, same columns, same sequence.

LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE;

ALTER TABLE audit_events RENAME TO audit_events_unpartitioned;
ALTER INDEX audit_events_pkey RENAME TO audit_events_unpartitioned_pkey;
ALTER INDEX audit_events_token RENAME TO audit_events_unpartitioned_token;
ALTER INDEX audit_events_subject RENAME TO audit_events_unpartitioned_subject;
ALTER INDEX audit_events_at RENAME TO audit_events_unpartitioned_at;

CREATE TABLE audit_events (
    id             bigint      NOT NULL DEFAULT nextval('audit_events_id_seq'),
    at             timestamptz NOT NULL DEFAULT clock_timestamp(),
    request_id     text        NOT NULL,
    method         text        NOT NULL,
    token_id       uuid,
    principal      smallint    NOT NULL,
    subject_id     uuid        NOT NULL,
    credential_id  text        NOT NULL,
    outcome        text        NOT NULL,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
-- The sequence lives as long as the trail, not as the first partition.
ALTER SEQUENCE audit_events_id_seq OWNED BY audit_events.id;

CREATE INDEX audit_events_token ON audit_events (token_id, at);
CREATE INDEX audit_events_subject ON audit_events (subject_id, at);
CREATE INDEX audit_events_at ON audit_events (at);

-- Rows that fall in no day's partition (the service made none ahead in
-- time) are kept here rather than refused: an audit write never fails for
-- want of a partition. Normally empty.
CREATE TABLE audit_events_default PARTITION OF audit_events DEFAULT;

-- When the rows already written end, and today's first partition begins.
CREATE TABLE audit_partitioning (
    cutover   timestamptz NOT NULL,
    attached  boolean     NOT NULL DEFAULT false
);

DO $$
DECLARE
    cut timestamptz := clock_timestamp();
    day timestamptz;
BEGIN
    INSERT INTO audit_partitioning (cutover) VALUES (cut);
    EXECUTE format(
        'ALTER TABLE audit_events_unpartitioned ADD CONSTRAINT audit_events_unpartitioned_before'
        ' CHECK (at < %L) NOT VALID', cut);
    -- Today's partition starts at the swap; the next days' at midnight UTC.
    day := date_trunc('day', cut AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    EXECUTE format('CREATE TABLE %I PARTITION OF audit_events FOR VALUES FROM (%L) TO (%L)',
        'audit_events_' || to_char(day AT TIME ZONE 'UTC', 'YYYYMMDD'), cut, day + interval '1 day');
    FOR i IN 1..7 LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF audit_events FOR VALUES FROM (%L) TO (%L)',
            'audit_events_' || to_char((day + i * interval '1 day') AT TIME ZONE 'UTC', 'YYYYMMDD'),
            day + i * interval '1 day', day + (i + 1) * interval '1 day');
    END LOOP;
END $$;
