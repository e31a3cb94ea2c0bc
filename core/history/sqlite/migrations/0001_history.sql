-- Delivery history (SQLite): one row per delivery, attempt and operator action. Times are integer
-- milliseconds since the epoch; ids are time-ordered text, so (created_ms, id) orders by creation.
CREATE TABLE hp_delivery (
  id text PRIMARY KEY,
  created_ms integer NOT NULL,
  message_id text NOT NULL,
  endpoint_id text NOT NULL,
  event_type text NOT NULL,
  status text NOT NULL,
  attempts integer NOT NULL,
  updated_ms integer NOT NULL,
  next_attempt_ms integer,
  last_code integer,
  last_error text,
  version integer NOT NULL
) WITHOUT ROWID;

-- One index per filter of GET /v1/deliveries, the sort key last.
CREATE INDEX hp_delivery_newest ON hp_delivery (created_ms, id);
CREATE INDEX hp_delivery_endpoint ON hp_delivery (endpoint_id, created_ms, id);
CREATE INDEX hp_delivery_endpoint_status ON hp_delivery (endpoint_id, status, created_ms, id);
CREATE INDEX hp_delivery_status ON hp_delivery (status, created_ms, id);
CREATE INDEX hp_delivery_event_type ON hp_delivery (event_type, created_ms, id);
CREATE INDEX hp_delivery_message ON hp_delivery (message_id);

CREATE TABLE hp_attempt (
  delivery_id text NOT NULL,
  number integer NOT NULL,
  endpoint_id text NOT NULL,
  recorded_ms integer NOT NULL,
  record text NOT NULL,
  cut_reason text,
  PRIMARY KEY (delivery_id, number)
) WITHOUT ROWID;

CREATE INDEX hp_attempt_endpoint ON hp_attempt (endpoint_id, recorded_ms, delivery_id, number);

CREATE TABLE hp_action (
  delivery_id text NOT NULL,
  seq text NOT NULL,
  action text NOT NULL,
  PRIMARY KEY (delivery_id, seq)
) WITHOUT ROWID;
