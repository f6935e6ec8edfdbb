"""Limiter adapters satisfying ``apiward.services.limiting.Limiter``.

``memory`` keeps state in the process (the embedded default), ``redis`` makes
decisions exact across processes and machines, ``fallback`` decides what happens
while Redis is down.
"""
