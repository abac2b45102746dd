"""Column look-up and JSON-safe attribute values shared by the layer checks."""
from __future__ import annotations

import datetime as dt
import math

import numpy as np


def with_none(df, columns):
    """``df`` with ``columns`` as object dtype holding ``None`` for missing values.

    pandas 3 infers a string dtype whose missing value is NaN (truthy, and not
    valid JSON); packs hand ``None`` to their users instead.
    """
    for column in columns:
        if column in df.columns:
            values = df[column].astype(object)
            df[column] = values.where(values.notna(), None)
    return df


def find_column(columns, *names: str) -> str | None:
    """The first column whose name matches one of ``names``, ignoring case."""
    lowered = {str(c).strip().lower(): c for c in columns}
    for name in names:
        if name in lowered:
            return lowered[name]
    return None


def json_value(value):
    """A cell value as something ``json.dumps`` accepts (NaN -> None)."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    try:
        if value != value:  # pandas NA / NaT
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def attributes(record: dict, exclude) -> dict:
    """The extra columns of a record, JSON-safe, without blanks."""
    out = {}
    for key, value in record.items():
        if key in exclude or str(key).startswith("_"):
            continue
        value = json_value(value)
        if value is None or value == "":
            continue
        out[str(key)] = value
    return out
