"""The city the dashboard serves, from the city pack's ``city.yaml``."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from layers.config import CityConfig, read_config
from layers.problems import PackError, ProblemLog


@lru_cache(maxsize=4)
def city(pack: str) -> CityConfig:
    log = ProblemLog()
    config = read_config(Path(pack), log)
    if config is None or log.has_errors():
        raise PackError(log.errors)
    return config
