"""Adapters: storage, caches, the HTTP server and the CLI. The only ring with I/O."""
