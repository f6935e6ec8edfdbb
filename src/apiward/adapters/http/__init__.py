"""The HTTP server (FastAPI): the public contract of DESIGN.md section 3."""
