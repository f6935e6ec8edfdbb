"""Request and response bodies of the HTTP API, one module per route module of
``adapters/http/routes`` (``common`` holds what several share)."""
