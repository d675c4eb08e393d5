"""SSL methods, one per file; each registers itself (see :mod:`engine.registry`)."""
