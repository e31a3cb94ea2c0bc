"""hookpump's shared home: domain types, settings, errors and the Redis data layer.

`service/`, `delivery/` and `scheduler/` import from here; nothing here imports them.
"""
