"""The hub's database: SQLAlchemy Core tables, Alembic migrations, one Store per hub."""

from agent.hub.store.engine import Store, open_store

__all__ = ["Store", "open_store"]
