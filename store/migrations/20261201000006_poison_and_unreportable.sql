-- Bounds that do not rest on the broker.
--
-- `redeliveries` counts deliveries of a dispatch that RabbitMQ marked redelivered (a worker took
-- it and never settled it: a crash, a kill, a lost connection). Past a bound the worker records
-- it `dead_lettered` as a poison message itself, before the broker's own delivery limit (whose
-- counting differs between RabbitMQ 3.10 and 4.x) would dead-letter it unrecorded.
--
-- `look_failures` counts consecutive looks at a run that Flyte answered with a permanent error
-- (not found, permission denied): past a bound the run ends `failed` instead of being looked at
-- forever.
ALTER TABLE dispatches
    ADD COLUMN redeliveries integer NOT NULL DEFAULT 0,
    ADD COLUMN look_failures integer NOT NULL DEFAULT 0;
