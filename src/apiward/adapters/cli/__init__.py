"""The ``apiward`` command line."""
