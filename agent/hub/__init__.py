"""The hub: what workers register with (pools, machine policies, health checks, tasks).

It reaches workers only through ``agent.client``; its rules are plain functions
over data (``rules``), its state lives in the database (``store``), and the
REST API (``api``) is shaped like Octopus Deploy's.
"""
