"""The `hookpump` command and the processes it runs: API, worker, and the embedded Redis of `dev`."""
