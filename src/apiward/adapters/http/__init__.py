"""The HTTP server (FastAPI): the public contract (README, "HTTP API")."""
