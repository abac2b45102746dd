"""Development and test tooling: the local stack (``stack/``) and ``make run`` (``devrun``).

Nothing in ``core``, ``layers``, ``ingest``, ``kpis`` or ``dashboard`` imports this package
(an import-linter contract in ``.importlinter`` checks it).
"""
