"""Use cases, written against the protocols of ``apiward.services.ports``."""
