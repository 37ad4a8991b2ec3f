"""Local stack for `make run` and the tests: real PostgreSQL, Redis, daprd and the services.

Every process runs on a free loopback port, logs to a file, and is stopped (process group,
SIGTERM then SIGKILL) when its owner exits, even on failure.
"""
