"""Storage adapters satisfying ``apiward.services.ports.Store``."""
