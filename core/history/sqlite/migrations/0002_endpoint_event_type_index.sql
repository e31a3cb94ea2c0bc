-- GET /v1/deliveries?endpoint_id=...&event_type=... gets an index of its own, as on PostgreSQL.
CREATE INDEX hp_delivery_endpoint_event_type ON hp_delivery (endpoint_id, event_type, created_ms, id);
