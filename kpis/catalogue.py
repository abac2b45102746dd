"""The KPI catalogue: ``default_catalogue.yaml`` plus an optional city-pack ``kpis.yaml``.

:func:`load_catalogue` reads the default catalogue and, when the city pack
names one, the pack's file, which overrides entries by ``id`` (mappings are
merged key by key, other values replaced), adds new ones, or removes one
with ``enabled: false``.  Everything is validated before use; every problem
found is collected and raised together as :class:`CatalogueError`, each
naming the file, the KPI id and what is wrong.  The format is documented in
docs/kpis.md.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from kpis import aqi

DEFAULT_FILE = Path(__file__).with_name("default_catalogue.yaml")
LOCALES = ("pt-BR", "en", "ja")
DOMAINS = ("mobility", "transport", "infrastructure", "health")
SCOPES = ("city", "district", "road", "route")
BETTER = ("higher", "lower")
ID_RE = re.compile(r"^[a-z][a-z0-9_]{1,62}$")
SOURCE_AGGREGATIONS = {
    "readings": ("mean", "sum", "share", "ratio", "congestion", "aqi"),
    "vehicles": ("on_time", "mean_delay", "in_service", "crowding"),
    "health": ("reporting", "lag", "dead_letters"),
}
SOURCE_SCOPES = {"readings": ("city", "district", "road"), "vehicles": ("city", "route"),
                 "health": ("city", "district")}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_TIME_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class CatalogueError(ValueError):
    """The catalogue cannot be used; ``problems`` lists every ``file: kpi 'id': what``."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid KPI catalogue:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class Thresholds:
    target: float | None = None
    warning: float | None = None
    critical: float | None = None


@dataclass(frozen=True)
class AlertRule:
    min_duration: timedelta = timedelta(minutes=5)
    hysteresis: float | None = None  # None: 5 % of |warning|
    anomaly: bool = False
    anomaly_z: float = 3.5


@dataclass(frozen=True)
class Formula:
    """What a KPI is computed from; ``params`` are normalised per aggregation (docs/kpis.md)."""

    source: str  # readings | vehicles | health
    aggregation: str
    kinds: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()  # every metric read
    filters: tuple[dict, ...] = ()
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Kpi:
    id: str
    label: dict[str, str]
    description: dict[str, str]
    domain: str
    formula: Formula
    unit: str
    better: str
    thresholds: Thresholds
    scopes: tuple[str, ...]
    public: bool
    min_group: int
    window: timedelta
    alert: AlertRule
    file: str = ""  # where it was (last) defined

    def text(self, locale: str) -> tuple[str, str]:
        """(label, description) in ``locale``, English when unknown."""
        loc = locale if locale in self.label else "en"
        return self.label[loc], self.description[loc]

    def definition_hash(self, catalogue: "Catalogue") -> str:
        """Changes whenever the values materialised for this KPI would change."""
        doc = {"formula": [self.formula.source, self.formula.aggregation, self.formula.kinds,
                           self.formula.metrics, self.formula.filters, self.formula.params],
               "scopes": self.scopes, "tz": catalogue.timezone,
               "road": catalogue.road_attribute,
               "scheduled": catalogue.scheduled_vehicles if self.formula.source == "vehicles" else None}
        if self.formula.source == "vehicles":  # planned vehicles from the GTFS timetable, in_service capped
            doc["planned"] = 2
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class HealthRules:
    silent_after: timedelta = timedelta(minutes=15)
    stuck_after: timedelta = timedelta(hours=3)
    stuck_min_readings: int = 10
    stuck_ignore: tuple[str, ...] = ()
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Catalogue:
    kpis: dict[str, Kpi]  # in catalogue order
    health: HealthRules
    timezone: str = "UTC"
    road_attribute: str = "road"
    files: tuple[str, ...] = ()
    # configured vehicles per route: {"default": n, "routes": {route: n}}; "routes" override the GTFS
    # timetable, "default" is for routes without one (evaluate.planned_vehicles)
    scheduled_vehicles: dict = field(default_factory=lambda: {"default": 0, "routes": {}})

    def __iter__(self):
        return iter(self.kpis.values())

    def __len__(self) -> int:
        return len(self.kpis)

    def __getitem__(self, kpi_id: str) -> Kpi:
        return self.kpis[kpi_id]


# -- loading -------------------------------------------------------------------

def load_catalogue(pack: str | Path | None = None, *, override: str | Path | None = None,
                   timezone: str | None = None) -> Catalogue:
    """The default catalogue, overridden by the pack's ``kpis.yaml`` (or ``override``).

    ``pack`` is a city-pack folder: its ``city.yaml`` gives the timezone and the
    ``kpis`` file (``layers: {kpis: ...}``); a missing file means no override.
    """
    if pack is not None:
        tz_found, kpis_file = pack_info(Path(pack))
        timezone = timezone or tz_found
        if override is None and kpis_file is not None and kpis_file.is_file():
            override = kpis_file
    default_doc = _read_yaml(DEFAULT_FILE)
    override_doc = _read_yaml(Path(override)) if override is not None else None
    return parse_catalogue(default_doc, str(DEFAULT_FILE.name), override_doc,
                           str(override) if override is not None else None, timezone or "UTC")


def pack_info(pack: Path) -> tuple[str | None, Path | None]:
    """(timezone, KPI catalogue file) named by a city pack's ``city.yaml``; Nones when absent."""
    config = pack / "city.yaml"
    if not config.is_file():
        return None, None
    raw = _read_yaml(config)
    layers = raw.get("layers") if isinstance(raw.get("layers"), dict) else {}
    kpis = layers.get("kpis", raw.get("kpis"))
    tz = raw.get("timezone")
    return (str(tz) if tz else None), (pack / str(kpis) if kpis else None)


def _read_yaml(path: Path) -> dict:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogueError([f"{path}: cannot read: {exc}"]) from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise CatalogueError([f"{path}: expected a mapping with 'kpis'"])
    return doc


def parse_catalogue(default_doc: dict, default_file: str, override_doc: dict | None = None,
                    override_file: str | None = None, timezone: str = "UTC") -> Catalogue:
    """Merge and validate catalogue documents (already parsed YAML); pure."""
    problems: list[str] = []
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"{override_file or default_file}: unknown timezone {timezone!r}")
        timezone = "UTC"
    docs = [(default_file, default_doc)] + ([(override_file, override_doc)] if override_doc is not None else [])
    entries: dict[str, dict] = {}
    origin: dict[str, dict[str, str]] = {}  # kpi id -> top-level key -> file
    defaults: dict = {}
    health: dict = {}
    road_attribute = "road"
    scheduled: Any = {"default": 0, "routes": {}}
    scheduled_file = default_file
    for file, doc in docs:
        unknown = set(doc) - {"version", "defaults", "health", "kpis", "road_attribute",
                              "scheduled_vehicles"}
        if unknown:
            problems.append(f"{file}: unknown top-level key(s): {', '.join(sorted(unknown))}")
        if doc.get("version", 1) != 1:
            problems.append(f"{file}: version {doc.get('version')!r} is not supported (expected 1)")
        if isinstance(doc.get("defaults"), dict):
            defaults = _merge(defaults, doc["defaults"])
        elif doc.get("defaults") is not None:
            problems.append(f"{file}: 'defaults' must be a mapping")
        if isinstance(doc.get("health"), dict):
            health = _merge(health, doc["health"])
        elif doc.get("health") is not None:
            problems.append(f"{file}: 'health' must be a mapping")
        if doc.get("road_attribute") is not None:
            road_attribute = str(doc["road_attribute"])
        if doc.get("scheduled_vehicles") is not None:
            scheduled = _merge(scheduled, doc["scheduled_vehicles"]) \
                if isinstance(doc["scheduled_vehicles"], dict) else doc["scheduled_vehicles"]
            scheduled_file = file
        kpis = doc.get("kpis", [])
        if not isinstance(kpis, list):
            problems.append(f"{file}: 'kpis' must be a list of KPI entries")
            continue
        seen: set[str] = set()
        for n, entry in enumerate(kpis, 1):
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                problems.append(f"{file}: KPI entry #{n}: missing id (each entry is a mapping with an 'id')")
                continue
            kpi_id = entry["id"]
            if kpi_id in seen:
                problems.append(f"{file}: kpi '{kpi_id}': defined twice in this file")
                continue
            seen.add(kpi_id)
            if entry.get("enabled") is False:
                entries.pop(kpi_id, None)
                origin.pop(kpi_id, None)
                continue
            body = {k: v for k, v in entry.items() if k != "enabled"}
            entries[kpi_id] = _merge(entries.get(kpi_id, {}), body)
            where = origin.setdefault(kpi_id, {})
            for key in body:
                where[key] = file
            where["_last"] = file
    kpis: dict[str, Kpi] = {}
    for kpi_id, entry in entries.items():
        merged = _merge(_kpi_defaults(defaults), entry)
        kpi = _validate_kpi(kpi_id, merged, origin[kpi_id], problems)
        if kpi is not None:
            kpis[kpi_id] = kpi
    rules = _validate_health(health, override_file if override_doc and "health" in override_doc
                             else default_file, problems)
    scheduled = _scheduled(scheduled, scheduled_file, problems)
    if problems:
        raise CatalogueError(problems)
    return Catalogue(kpis, rules, timezone, road_attribute, tuple(f for f, _ in docs), scheduled)


def _scheduled(raw, file: str, problems: list[str]) -> dict:
    """``scheduled_vehicles``: {default: vehicles per route, routes: {route id: vehicles}}."""
    if not isinstance(raw, dict):
        problems.append(f"{file}: scheduled_vehicles: must be {{default: n, routes: {{route: n}}}}")
        return {"default": 0, "routes": {}}
    default, routes = raw.get("default", 0), raw.get("routes") or {}
    unknown = set(raw) - {"default", "routes"}
    if unknown:
        problems.append(f"{file}: scheduled_vehicles: unknown key(s) {', '.join(sorted(unknown))}")
    if not isinstance(default, int) or isinstance(default, bool) or default < 0:
        problems.append(f"{file}: scheduled_vehicles.default: must be a whole number >= 0")
        default = 0
    if not isinstance(routes, dict) or any(not isinstance(v, int) or isinstance(v, bool) or v < 0
                                           for v in routes.values()):
        problems.append(f"{file}: scheduled_vehicles.routes: must map route ids to whole numbers >= 0")
        routes = {}
    return {"default": default, "routes": {str(k): v for k, v in routes.items()}}


def _kpi_defaults(defaults: dict) -> dict:
    return {k: copy.deepcopy(v) for k, v in defaults.items()}


def _merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``: nested mappings merged, anything else replaced."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# -- validation ------------------------------------------------------------------

class _Check:
    """Collects problems for one KPI, naming the file each key came from."""

    def __init__(self, kpi_id: str, origin: dict[str, str], problems: list[str]):
        self.kpi_id, self.origin, self.problems = kpi_id, origin, problems
        self.failed = False

    def __call__(self, key: str, message: str) -> None:
        file = self.origin.get(key.split(".")[0], self.origin.get("_last", "?"))
        self.problems.append(f"{file}: kpi '{self.kpi_id}': {key}: {message}")
        self.failed = True


def _validate_kpi(kpi_id: str, e: dict, origin: dict[str, str], problems: list[str]) -> Kpi | None:
    bad = _Check(kpi_id, origin, problems)
    known = {"id", "label", "description", "domain", "formula", "unit", "better", "thresholds",
             "scopes", "public", "min_group", "window", "alert"}
    for key in sorted(set(e) - known):
        bad(key, "unknown field")
    if not ID_RE.match(kpi_id):
        bad("id", "must be lower_snake_case, 2-63 characters, starting with a letter")
    texts = {}
    for key in ("label", "description"):
        value = e.get(key)
        if not isinstance(value, dict):
            bad(key, f"must be a mapping with {', '.join(LOCALES)}")
            continue
        missing = [loc for loc in LOCALES if not isinstance(value.get(loc), str) or not value[loc].strip()]
        if missing:
            bad(key, f"missing text for {', '.join(missing)}")
        texts[key] = {str(k): str(v) for k, v in value.items()}
    domain = e.get("domain")
    if domain not in DOMAINS:
        bad("domain", f"{domain!r} is not one of {', '.join(DOMAINS)}")
    unit = e.get("unit")
    if not isinstance(unit, str) or not unit:
        bad("unit", "missing (a short unit text such as '%' or 'km/h')")
    better = e.get("better")
    if better not in BETTER:
        bad("better", f"{better!r} is not one of {', '.join(BETTER)}")
    thresholds = _thresholds(e.get("thresholds"), better, bad)
    formula = _formula(e.get("formula"), bad)
    scopes = e.get("scopes", ["city"])
    if not isinstance(scopes, list) or not scopes or any(s not in SCOPES for s in scopes):
        bad("scopes", f"must be a non-empty list of {', '.join(SCOPES)}")
        scopes = ["city"]
    elif formula is not None:
        allowed = SOURCE_SCOPES[formula.source]
        wrong = [s for s in scopes if s not in allowed]
        if wrong:
            bad("scopes", f"{', '.join(wrong)} not available for source {formula.source} "
                          f"(allowed: {', '.join(allowed)})")
    if "city" not in scopes:
        scopes = ["city", *scopes]
    public = e.get("public", False)
    if not isinstance(public, bool):
        bad("public", "must be true or false")
    min_group = e.get("min_group", 3)
    if not isinstance(min_group, int) or isinstance(min_group, bool) or min_group < 1:
        bad("min_group", "must be a whole number >= 1")
    window = _duration(e.get("window", "10m"), "window", bad)
    alert = _alert(e.get("alert") or {}, bad)
    if bad.failed:
        return None
    return Kpi(kpi_id, texts["label"], texts["description"], domain, formula, unit, better,
               thresholds, tuple(dict.fromkeys(scopes)), public, min_group, window, alert,
               origin.get("_last", ""))


def _number(value, key: str, bad, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        bad(key, f"{value!r} is not a number")
        return None
    return float(value)


def _thresholds(raw, better, bad) -> Thresholds:
    if raw is None:
        return Thresholds()
    if not isinstance(raw, dict):
        bad("thresholds", "must be a mapping with target, warning, critical")
        return Thresholds()
    for key in sorted(set(raw) - {"target", "warning", "critical"}):
        bad(f"thresholds.{key}", "unknown threshold (target, warning, critical)")
    t = Thresholds(*(_number(raw.get(k), f"thresholds.{k}", bad) for k in ("target", "warning", "critical")))
    values = [v for v in (t.target, t.warning, t.critical) if v is not None]
    ordered = values == sorted(values) if better == "lower" else values == sorted(values, reverse=True)
    if better in BETTER and not ordered:
        order = "target <= warning <= critical" if better == "lower" else "target >= warning >= critical"
        bad("thresholds", f"with better: {better} they must satisfy {order}")
    return t


def _duration(value, key: str, bad, allow_zero: bool = False) -> timedelta:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(str(value)) if value is not None else None
        if not match:
            bad(key, f"{value!r} is not a duration (e.g. 90s, 10m, 8h, 1d)")
            return timedelta(minutes=10)
        seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bad(key, "must be longer than zero")
        return timedelta(minutes=10)
    return timedelta(seconds=seconds)


def _alert(raw, bad) -> AlertRule:
    if not isinstance(raw, dict):
        bad("alert", "must be a mapping")
        return AlertRule()
    for key in sorted(set(raw) - {"min_duration", "hysteresis", "anomaly", "anomaly_z"}):
        bad(f"alert.{key}", "unknown field (min_duration, hysteresis, anomaly, anomaly_z)")
    hysteresis = _number(raw.get("hysteresis"), "alert.hysteresis", bad)
    if hysteresis is not None and hysteresis < 0:
        bad("alert.hysteresis", "must be >= 0")
    z = _number(raw.get("anomaly_z", 3.5), "alert.anomaly_z", bad, allow_none=False)
    if z is not None and z <= 0:
        bad("alert.anomaly_z", "must be > 0")
    anomaly = raw.get("anomaly", False)
    if not isinstance(anomaly, bool):
        bad("alert.anomaly", "must be true or false")
    return AlertRule(_duration(raw.get("min_duration", "5m"), "alert.min_duration", bad, allow_zero=True),
                     hysteresis, bool(anomaly), z or 3.5)


def _names(value) -> tuple[str, ...] | None:
    if isinstance(value, str) and value:
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    return None


def _formula(raw, bad) -> Formula | None:
    if not isinstance(raw, dict):
        bad("formula", "missing (a mapping with aggregation, kind, metric ...)")
        return None
    source = raw.get("source", "readings")
    if source not in SOURCE_AGGREGATIONS:
        bad("formula.source", f"{source!r} is not one of {', '.join(SOURCE_AGGREGATIONS)}")
        return None
    aggregation = raw.get("aggregation")
    if aggregation not in SOURCE_AGGREGATIONS[source]:
        bad("formula.aggregation", f"{aggregation!r} is not one of "
                                   f"{', '.join(SOURCE_AGGREGATIONS[source])} (source {source})")
        return None
    rest = {k: v for k, v in raw.items() if k not in ("source", "aggregation")}
    if source == "vehicles":
        return _vehicle_formula(aggregation, rest, bad)
    if source == "health":
        for key in sorted(rest):
            bad(f"formula.{key}", "health KPIs take no parameters")
        return Formula(source, aggregation)
    kinds = _names(rest.pop("kinds", rest.pop("kind", None)))
    if kinds is None:
        bad("formula.kind", "missing sensor kind (kind: name, or kinds: [names])")
        kinds = ()
    filters = _filters(rest.pop("filters", []), bad)
    params: dict[str, Any] = {}
    metrics: tuple[str, ...] = ()

    def metric(key: str = "metric") -> str | None:
        value = rest.pop(key, None)
        if not isinstance(value, str) or not value:
            bad(f"formula.{key}", "missing metric name")
            return None
        return value

    if aggregation in ("mean", "sum", "share", "congestion"):
        m = metric()
        metrics = (m,) if m else ()
        if aggregation in ("mean", "congestion"):
            params["weight"] = _weight(rest.pop("weight", None), bad)
        if aggregation == "congestion":
            ff = rest.pop("free_flow", None)
            if not isinstance(ff, dict) or not isinstance(ff.get("attribute"), str):
                bad("formula.free_flow", "must be {attribute: name[, default: km/h]}")
            else:
                params["free_flow"] = {"attribute": ff["attribute"],
                                       "default": _number(ff.get("default"), "formula.free_flow.default", bad)}
            floor = _number(rest.pop("speed_floor_kmh", 5), "formula.speed_floor_kmh", bad)
            if floor is not None and floor <= 0:
                bad("formula.speed_floor_kmh", "must be > 0")
            params["speed_floor_kmh"] = floor or 5.0
        if aggregation == "share":
            conditions = [k for k in ("above", "below", "outside") if k in rest]
            if len(conditions) != 1:
                bad("formula", "share needs exactly one of above, below, outside")
            else:
                cond = conditions[0]
                raw_limit = rest.pop(cond)
                if cond == "outside":
                    if not isinstance(raw_limit, list) or len(raw_limit) != 2:
                        bad("formula.outside", "must be [low, high]")
                    else:
                        params["outside"] = [_limit(v, f"formula.outside[{i}]", bad)
                                             for i, v in enumerate(raw_limit)]
                else:
                    params[cond] = _limit(raw_limit, f"formula.{cond}", bad)
            result = rest.pop("result", "percent")
            if result not in ("percent", "count"):
                bad("formula.result", "must be percent or count")
            params["result"] = result
    elif aggregation == "ratio":
        num, den = _names(rest.pop("numerator", None)), _names(rest.pop("denominator", None))
        if num is None or den is None:
            bad("formula", "ratio needs numerator: [metrics] and denominator: [metrics]")
        else:
            params["numerator"], params["denominator"] = list(num), list(den)
            metrics = tuple(dict.fromkeys(num + den))
    elif aggregation == "aqi":
        pollutants = rest.pop("pollutants", None)
        if not isinstance(pollutants, dict) or not pollutants:
            bad("formula.pollutants", f"must map some of {', '.join(aqi.POLLUTANTS)} to {{metric, unit, window}}")
        else:
            out = {}
            for name, spec in pollutants.items():
                key = f"formula.pollutants.{name}"
                if name not in aqi.POLLUTANTS:
                    bad(key, f"unknown pollutant (one of {', '.join(aqi.POLLUTANTS)})")
                    continue
                if not isinstance(spec, dict) or not isinstance(spec.get("metric"), str):
                    bad(key, "must be {metric: name, unit: ug/m3|ppb|ppm, window: 24h}")
                    continue
                unit = spec.get("unit", aqi.TABLE[name][0])
                try:
                    aqi.to_epa_units(name, 1.0, unit)
                except (ValueError, KeyError):
                    bad(f"{key}.unit", f"{unit!r} cannot be converted to {aqi.TABLE[name][0]}")
                window = _duration(spec.get("window", aqi.TABLE[name][1]), f"{key}.window", bad)
                out[name] = {"metric": spec["metric"], "unit": unit, "window_s": window.total_seconds()}
            params["pollutants"] = out
            metrics = tuple(dict.fromkeys(p["metric"] for p in out.values()))
    for key in sorted(rest):
        bad(f"formula.{key}", f"unknown parameter for aggregation {aggregation}")
    return Formula(source, aggregation, kinds, metrics, filters, params)


def _vehicle_formula(aggregation: str, rest: dict, bad) -> Formula:
    params: dict[str, Any] = {}
    if aggregation == "on_time":
        value = _number(rest.pop("max_delay_s", 180), "formula.max_delay_s", bad)
        params["max_delay_s"] = value if value is not None else 180.0
    for key in sorted(rest):
        bad(f"formula.{key}", f"unknown parameter for aggregation {aggregation}")
    return Formula("vehicles", aggregation, (), (), (), params)


def _weight(raw, bad) -> dict | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("attribute"), str):
        bad("formula.weight", "must be {attribute: name, default: number}")
        return None
    default = _number(raw.get("default", 1), "formula.weight.default", bad)
    return {"attribute": raw["attribute"], "default": 1.0 if default is None else default}


def _limit(raw, key: str, bad) -> dict:
    """A threshold: a number, {value, attribute} (per sensor), or a day/night schedule."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return {"value": float(raw)}
    if isinstance(raw, dict) and "day" in raw:
        day = _number(raw.get("day"), f"{key}.day", bad, allow_none=False)
        night = _number(raw.get("night"), f"{key}.night", bad, allow_none=False)
        starts = []
        for part, default in (("day_start", "07:00"), ("night_start", "22:00")):
            text = str(raw.get(part, default))
            match = _TIME_RE.match(text)
            if not match:
                bad(f"{key}.{part}", f"{text!r} is not a time HH:MM")
                starts.append(0)
            else:
                starts.append(int(match[1]) * 60 + int(match[2]))
        unknown = set(raw) - {"day", "night", "day_start", "night_start"}
        if unknown:
            bad(key, f"unknown key(s) {', '.join(sorted(unknown))}")
        return {"day": day, "night": night, "day_start_min": starts[0], "night_start_min": starts[1]}
    if isinstance(raw, dict) and "value" in raw:
        value = _number(raw.get("value"), f"{key}.value", bad, allow_none=False)
        attribute = raw.get("attribute")
        if attribute is not None and not isinstance(attribute, str):
            bad(f"{key}.attribute", "must be an attribute name")
        return {"value": value, "attribute": attribute}
    bad(key, "must be a number, {value, attribute} or {day, night, day_start, night_start}")
    return {"value": 0.0}


def _filters(raw, bad) -> tuple[dict, ...]:
    if raw is None or raw == []:
        return ()
    if not isinstance(raw, list):
        bad("formula.filters", "must be a list of {attribute, in|equals|gte|lte}")
        return ()
    out = []
    for i, f in enumerate(raw):
        key = f"formula.filters[{i}]"
        ops = [op for op in ("in", "equals", "gte", "lte") if isinstance(f, dict) and op in f]
        if not isinstance(f, dict) or not isinstance(f.get("attribute"), str) or len(ops) != 1:
            bad(key, "must be {attribute: name} with exactly one of in, equals, gte, lte")
            continue
        op = ops[0]
        value = f[op]
        if op == "in" and not isinstance(value, list):
            bad(key, "'in' takes a list")
            continue
        if op in ("gte", "lte") and _number(value, f"{key}.{op}", bad, allow_none=False) is None:
            continue
        out.append({"attribute": f["attribute"], "op": op,
                    "value": [str(v) for v in value] if op == "in" else
                    (str(value) if op == "equals" else float(value))})
    return tuple(out)


def _validate_health(raw: dict, file: str, problems: list[str]) -> HealthRules:
    def bad(key, message):
        problems.append(f"{file}: health.{key}: {message}")

    unknown = set(raw) - {"silent_after", "stuck_after", "stuck_min_readings", "stuck_ignore", "ranges"}
    for key in sorted(unknown):
        bad(key, "unknown field")
    silent = _duration(raw.get("silent_after", "15m"), "silent_after", bad)
    stuck = _duration(raw.get("stuck_after", "3h"), "stuck_after", bad)
    n = raw.get("stuck_min_readings", 10)
    if not isinstance(n, int) or n < 2:
        bad("stuck_min_readings", "must be a whole number >= 2")
        n = 10
    ignore = raw.get("stuck_ignore", [])
    if not isinstance(ignore, list):
        bad("stuck_ignore", "must be a list of metric names")
        ignore = []
    ranges = {}
    for metric, pair in (raw.get("ranges") or {}).items():
        if (not isinstance(pair, list) or len(pair) != 2
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in pair)
                or pair[0] > pair[1]):
            bad(f"ranges.{metric}", "must be [low, high] with low <= high")
            continue
        ranges[str(metric)] = (float(pair[0]), float(pair[1]))
    return HealthRules(silent, stuck, n, tuple(str(m) for m in ignore), ranges)
