"""Observability: Prometheus metrics of an agent or a hub, and the small HTTP endpoint
(/metrics, /livez, /readyz) that serves them on the port given with ``--metrics``."""
