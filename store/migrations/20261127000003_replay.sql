-- Replay needs what the dispatch asked for: its inputs are kept with it.
ALTER TABLE dispatches ADD COLUMN inputs jsonb;
