-- Delivery history (PostgreSQL). Deliveries, attempts and actions are range-partitioned by the
-- delivery's creation time (ms since the epoch), one partition per UTC day, created ahead by the
-- adapter (no DEFAULT partition: retention detaches and drops whole days). Attempts and actions
-- carry their delivery's creation time so they age out with it.
CREATE TABLE hp_delivery (
  created_ms bigint NOT NULL,
  id text COLLATE "C" NOT NULL,
  message_id text COLLATE "C" NOT NULL,
  endpoint_id text COLLATE "C" NOT NULL,
  event_type text COLLATE "C" NOT NULL,
  status text NOT NULL,
  attempts integer NOT NULL,
  updated_ms bigint NOT NULL,
  next_attempt_ms bigint,
  last_code integer,
  last_error text,
  version bigint NOT NULL,
  PRIMARY KEY (created_ms, id)
) PARTITION BY RANGE (created_ms);

-- One index per filter of GET /v1/deliveries, the sort key last; "all, newest first" uses the key.
CREATE INDEX hp_delivery_endpoint ON hp_delivery (endpoint_id, created_ms DESC, id DESC);
CREATE INDEX hp_delivery_endpoint_status ON hp_delivery (endpoint_id, status, created_ms DESC, id DESC);
CREATE INDEX hp_delivery_status ON hp_delivery (status, created_ms DESC, id DESC);
CREATE INDEX hp_delivery_event_type ON hp_delivery (event_type, created_ms DESC, id DESC);
CREATE INDEX hp_delivery_message ON hp_delivery (message_id);

CREATE TABLE hp_attempt (
  delivery_created_ms bigint NOT NULL,
  delivery_id text COLLATE "C" NOT NULL,
  number integer NOT NULL,
  endpoint_id text COLLATE "C" NOT NULL,
  recorded_ms bigint NOT NULL,
  record text NOT NULL,
  cut_reason text,
  PRIMARY KEY (delivery_created_ms, delivery_id, number)
) PARTITION BY RANGE (delivery_created_ms);

CREATE INDEX hp_attempt_endpoint ON hp_attempt (endpoint_id, recorded_ms DESC, delivery_id DESC, number DESC);

CREATE TABLE hp_action (
  delivery_created_ms bigint NOT NULL,
  delivery_id text COLLATE "C" NOT NULL,
  seq text COLLATE "C" NOT NULL,
  action text NOT NULL,
  PRIMARY KEY (delivery_created_ms, delivery_id, seq)
) PARTITION BY RANGE (delivery_created_ms);
