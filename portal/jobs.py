"""Entry points the RQ worker runs."""
