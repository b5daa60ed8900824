"""Thin asyncio/aiohttp adapters around the sans-I/O protocol: TLS, listening, dialing."""
