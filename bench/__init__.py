"""Load tests and benchmarks of the Support Inbox: ``python -m bench.<module>``."""
