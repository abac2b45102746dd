"""What the ingestor needs to know about the city: its bounding box."""
from __future__ import annotations

from pathlib import Path

import yaml


def city_bbox(pack: str | Path) -> tuple[float, float, float, float] | None:
    """(min_lon, min_lat, max_lon, max_lat) from the pack's city.yaml, or None."""
    path = Path(pack) / "city.yaml"
    if not path.exists():
        return None
    bbox = (yaml.safe_load(path.read_text()) or {}).get("bbox")
    if not bbox or len(bbox) != 4:
        return None
    return tuple(float(v) for v in bbox)  # type: ignore[return-value]
