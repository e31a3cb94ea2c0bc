-- GET /v1/deliveries?endpoint_id=...&event_type=... had no index of its own (it filtered the
-- endpoint's rows): 27 ms p99 at 300,000 deliveries (BENCHMARKS.md). One composite, sort key last.
CREATE INDEX hp_delivery_endpoint_event_type ON hp_delivery (endpoint_id, event_type, created_ms DESC, id DESC);
