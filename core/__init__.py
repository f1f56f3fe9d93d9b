"""SemiREST core: the method, data handling, metrics and project storage. Never imports Qt."""

__version__ = "0.1.0"
