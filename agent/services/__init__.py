"""The RPC services an agent serves: capabilities and file transfer (scripts next)."""
