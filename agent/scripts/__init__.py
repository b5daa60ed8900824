"""Durable scripts: workspaces, the runner, the output log, state, the isolation mutex."""
