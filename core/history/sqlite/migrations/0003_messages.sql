-- Messages (their payloads) move from Redis to the history store once their last delivery has ended.
CREATE TABLE hp_message (
  id text PRIMARY KEY,
  created_ms integer NOT NULL,
  event_type text NOT NULL,
  payload text NOT NULL,
  trace text NOT NULL,
  delivery_ids text NOT NULL,
  accepted_ms integer NOT NULL
) WITHOUT ROWID;
