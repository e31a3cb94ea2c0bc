"""The arq worker, the cron-driven pump, and pacing: how deliveries leave hookpump."""
