-- Messages (their payloads) move from Redis to the history store once their last delivery has
-- ended; a manual retry brings one back. Partitioned by the message's creation day, which is its
-- deliveries' too (a delivery id embeds its message id), so a day is dropped as a whole.
CREATE TABLE hp_message (
  created_ms bigint NOT NULL,
  id text COLLATE "C" NOT NULL,
  event_type text COLLATE "C" NOT NULL,
  payload text NOT NULL,
  trace text NOT NULL,
  delivery_ids text NOT NULL,
  accepted_ms bigint NOT NULL,
  PRIMARY KEY (created_ms, id)
) PARTITION BY RANGE (created_ms);
