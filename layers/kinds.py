"""Sensor kinds: which domain a kind belongs to and which metrics it sends.

A pack declares kinds in ``city.yaml`` (or a YAML file it names)::

    sensor_kinds:
      traffic_counter:
        domain: mobility
        metrics: {flow: veh/h, speed: km/h, occupancy: "%"}

``metrics`` may also be a plain list (units unknown).  Kinds a pack does not
declare are accepted when the sensor row states a domain, or when the kind is
one of :data:`DEFAULT_DOMAINS`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from layers.problems import ProblemLog

DOMAINS = ("mobility", "transport", "infrastructure")

DEFAULT_DOMAINS = {
    "traffic_counter": "mobility",
    "parking": "mobility",
    "bike_dock": "mobility",
    "vehicle": "transport",
    "air_quality": "infrastructure",
    "noise": "infrastructure",
    "energy": "infrastructure",
    "water": "infrastructure",
    "streetlight": "infrastructure",
    "waste_bin": "infrastructure",
}


@dataclass(frozen=True, slots=True)
class SensorKind:
    kind: str
    domain: str
    metrics: tuple[str, ...] = ()  # empty: any metric accepted
    units: dict[str, str] = field(default_factory=dict)


def parse_kinds(raw, file: str, log: ProblemLog) -> dict[str, SensorKind]:
    """Validate a ``sensor_kinds`` mapping; problems go to ``log``."""
    kinds: dict[str, SensorKind] = {}
    if raw is None:
        return kinds
    if not isinstance(raw, dict):
        log.error(file, None, "sensor_kinds must be a mapping of kind -> {domain, metrics}")
        return kinds
    for kind, spec in raw.items():
        kind = str(kind)
        if not isinstance(spec, dict):
            log.error(file, None, f"sensor kind '{kind}': expected a mapping with domain and metrics")
            continue
        domain = spec.get("domain", DEFAULT_DOMAINS.get(kind))
        if domain not in DOMAINS:
            log.error(file, None, f"sensor kind '{kind}': domain {domain!r} is not one of {', '.join(DOMAINS)}")
            continue
        metrics_raw = spec.get("metrics") or {}
        if isinstance(metrics_raw, dict):
            units = {str(m): str(u) for m, u in metrics_raw.items() if u is not None}
            metrics = tuple(str(m) for m in metrics_raw)
        elif isinstance(metrics_raw, list):
            units, metrics = {}, tuple(str(m) for m in metrics_raw)
        else:
            log.error(file, None, f"sensor kind '{kind}': metrics must be a mapping metric -> unit or a list")
            continue
        kinds[kind] = SensorKind(kind, domain, metrics, units)
    return kinds
