"""apiward: a self-hosted authentication and authorisation layer for public HTTP APIs.

The package is laid out in three rings (README, "Layout"), dependencies pointing
inwards only:

- ``apiward.core``: pure logic, no I/O (key format, scopes, domain errors, models).
- ``apiward.services``: use cases written against the protocols in
  ``apiward.services.ports``.
- ``apiward.adapters``: SQL storage, caches, the HTTP server, the CLI.
"""

__version__ = "0.1.0"
