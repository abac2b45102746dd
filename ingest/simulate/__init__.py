"""The city simulator (``python -m ingest simulate``, docs/simulator.md).

A city pack becomes a :class:`~ingest.simulate.world.World` whose sensors and
vehicles report plausible values (``signals``, ``events``, ``vehicles``),
published live over MQTT in four formats (``encoders``, ``publisher``) or
written as history through the ingestor's writer (``backfill``).
"""
