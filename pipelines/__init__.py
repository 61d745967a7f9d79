"""One module per pipeline, behind the interface in ``pipelines.base``."""
