package main

// initSQL creates the table of realtime notifications, as Procon's users already have it.
const initSQL = `-- Realtime notifications: a row inserted in a transaction becomes one message on the
-- realtime topic once the transaction commits. procon-cdc deletes published rows.
CREATE TABLE IF NOT EXISTS procon_realtimes (
    id         bigserial PRIMARY KEY,
    session_id text,
    channel    text NOT NULL,
    metadata   jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
`
