"""The REST API: a Starlette app (`service.app.create_app`) over the store in `core.store`."""
