"""Loading a city pack: ``load_pack(path) -> CityPack``.

Reads ``city.yaml`` and every layer it names, checks them all, and raises one
:class:`~layers.problems.PackError` listing *every* error found (with the
warnings of the same pass).  A pack that loads carries its warnings (repairs,
defaults filled in) in ``CityPack.warnings``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd

from layers.config import CityConfig, LayerStyle, read_config
from layers.districts import check_districts
from layers.gtfs import Transit, read_gtfs
from layers.kinds import SensorKind
from layers.problems import PackError, Problem, ProblemLog
from layers.roads import COLUMNS as ROAD_COLUMNS
from layers.roads import check_roads
from layers.sensors import COLUMNS as SENSOR_COLUMNS
from layers.sensors import assign_districts, read_sensors
from layers.vector import WGS84, LayerReport, read_vector


@dataclass(slots=True)
class ExtraLayer:
    name: str
    file: str
    style: LayerStyle
    data: gpd.GeoDataFrame  # EPSG:4326, properties as in the file


@dataclass(slots=True)
class CityPack:
    """A loaded, validated city pack; every GeoDataFrame is in EPSG:4326.

    * ``districts``: ``id, name, attributes, geometry`` (Polygon/MultiPolygon)
    * ``roads``: ``id, name, class, speed_kmh, lanes, attributes, geometry``
    * ``transit``: :class:`layers.gtfs.Transit` (``routes``, ``lines``, ``stops``)
    * ``sensors``: ``id, kind, domain, name, metrics, road, stop, district_id,
      attributes, geometry`` (Point, or None when not placed)
    """

    root: Path
    config: CityConfig
    districts: gpd.GeoDataFrame
    roads: gpd.GeoDataFrame
    transit: Transit
    sensors: gpd.GeoDataFrame
    extra: list[ExtraLayer] = field(default_factory=list)
    reports: list[LayerReport] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return self.config.slug

    @property
    def kpis(self) -> Path | None:
        """The pack's KPI catalogue file, or None: use the default catalogue."""
        return self.config.kpis

    def sensor_kinds(self) -> dict[str, SensorKind]:
        """Declared kinds, plus kinds only seen in sensors (their metrics merged, no units)."""
        kinds = dict(self.config.sensor_kinds)
        for kind, group in self.sensors.groupby("kind", sort=True):
            if kind not in kinds:
                metrics = list(dict.fromkeys(m for ms in group["metrics"] for m in ms))  # first-seen order
                kinds[kind] = SensorKind(kind, group["domain"].iloc[0], tuple(metrics), {})
        return kinds


def load_pack(path: str | Path) -> CityPack:
    """Load and validate the pack in folder ``path``; raises :class:`PackError`."""
    pack, problems, reports = read_pack(path)
    if pack is None or any(p.is_error for p in problems):
        raise PackError(problems, reports)
    return pack


def read_pack(path: str | Path) -> tuple[CityPack | None, list[Problem], list[LayerReport]]:
    """Like :func:`load_pack` but never raises: ``(pack or None, problems, reports)``.

    ``pack`` is None when the pack has errors.
    """
    root = Path(path)
    log = ProblemLog()
    config = read_config(root, log)
    if config is None:
        return None, log.problems, []
    reports: list[LayerReport] = []

    districts = _layer(root, config.districts, "districts", "polygon", check_districts, log, reports)
    roads = _layer(root, config.roads, "roads", "line", check_roads, log, reports)
    roads_usable = roads is not None or not config.roads  # None: references to roads cannot be checked
    if roads is None:
        roads = gpd.GeoDataFrame({c: [] for c in ROAD_COLUMNS[:-1]}, geometry=gpd.GeoSeries([], crs=WGS84))
    transit: Transit | None = Transit()
    if config.transit:
        transit, report = read_gtfs(root, config.transit, log)
        reports.append(report)
    transit_usable = transit is not None
    transit = transit or Transit()
    sensors = gpd.GeoDataFrame({c: [] for c in SENSOR_COLUMNS[:-1]}, geometry=gpd.GeoSeries([], crs=WGS84))
    if config.sensors:
        sensors, report = read_sensors(root, config.sensors, config, roads if roads_usable else None,
                                       transit.stops if transit_usable else None, log)
        reports.append(report)
    extra = []
    for spec in config.extra:
        gdf, report = read_vector(root, spec.file, f"extra:{spec.name}", log, family=None)
        reports.append(report)
        if gdf is not None:
            extra.append(ExtraLayer(spec.name, spec.file, spec.style, gdf.drop(columns="_row")))
    _check_extent(config, reports, log)
    if districts is not None and len(sensors):
        sensors = assign_districts(sensors, districts)
        outside = int((sensors.geometry.notna() & sensors["district_id"].isna()).sum())
        if outside:
            log.warning(config.sensors, None, f"{outside} of {len(sensors)} sensors lie outside every district")
    if log.has_errors() or districts is None:
        return None, log.problems, reports
    pack = CityPack(root=root, config=config, districts=districts, roads=roads, transit=transit,
                    sensors=sensors, extra=extra, reports=reports, warnings=log.warnings)
    return pack, log.problems, reports


def _layer(root, file, layer, family, check, log, reports):
    if not file:
        return None
    gdf, report = read_vector(root, file, layer, log, family=family)
    reports.append(report)
    if gdf is None:
        return None
    return check(gdf, file, log)


def _check_extent(config: CityConfig, reports: list[LayerReport], log: ProblemLog) -> None:
    """A layer entirely outside the city bbox is almost always a CRS or axis-order mistake."""
    x0, y0, x1, y1 = config.bbox
    for report in reports:
        if report.bbox is None:
            continue
        a, b, c, d = report.bbox
        if a > x1 or c < x0 or b > y1 or d < y0:
            log.error(report.file, None, f"layer bbox ({a:.4f}, {b:.4f}, {c:.4f}, {d:.4f}) lies entirely outside "
                                         "the city bbox in city.yaml (wrong CRS or swapped lon/lat?)")
