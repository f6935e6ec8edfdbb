"""Cache adapters satisfying ``apiward.services.ports.Cache``."""
