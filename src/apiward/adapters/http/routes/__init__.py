"""Route modules of the HTTP server, one per resource."""
