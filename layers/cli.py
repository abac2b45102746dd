"""``python -m layers``: check, build, load and generate city packs.

    python -m layers check PATH            # validate; exit 1 when the pack has errors
    python -m layers build PATH [--out D]  # write web-ready layers (default var/layers/<slug>/)
    python -m layers load PATH [--out D]   # upsert into CITYDASH_DATABASE_URL, then build
    python -m layers demo [--seed N] OUT   # generate the synthetic demo city

Exit status: 0 success (warnings allowed), 1 errors (pack problems, database
unreachable, ...), 2 bad usage.  Problems are printed as ``file row N: reason``;
no Python traceback is shown (``--debug`` shows it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.settings import get_settings
from layers import web
from layers.pack import load_pack, read_pack
from layers.problems import PackError, Problem
from layers.store import store_pack
from layers.synth import generate
from layers.vector import LayerReport


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m layers", description="citydash city packs")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check", help="validate a city pack and print a summary")
    p.add_argument("path")
    p = sub.add_parser("build", help="write the web-ready layer files")
    p.add_argument("path")
    p.add_argument("--out", help="output folder (default: var/layers/<pack slug>/)")
    p = sub.add_parser("load", help="upsert districts, sensor kinds and sensors into the database, "
                                    "then write the web-ready layers")
    p.add_argument("path")
    p.add_argument("--out", help="output folder (default: var/layers/<pack slug>/)")
    p.add_argument("--database-url", help="PostgreSQL URL (default: CITYDASH_DATABASE_URL)")
    p = sub.add_parser("demo", help="generate the synthetic demo city pack")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except PackError as exc:
        print_summary(exc.reports, exc.problems)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # never a traceback for users
        if args.debug:
            raise
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def cmd_check(args) -> int:
    pack, problems, reports = read_pack(args.path)
    if pack is not None:
        c = pack.config
        print(f"pack {c.name} [{c.slug}]: locale {c.locale}, timezone {c.timezone}, "
              f"centre {c.centre[0]:.5f},{c.centre[1]:.5f}, zoom {c.zoom:g}")
        print(f"kpis: {c.kpis_file + ' (found)' if c.kpis else (c.kpis_file or '-') + ' -> default catalogue'}")
    print_summary(reports, problems)
    return 1 if pack is None or any(p.is_error for p in problems) else 0


def cmd_build(args) -> int:
    pack = load_pack(args.path)
    _print_warnings(pack.warnings)
    out = Path(args.out) if args.out else web.default_out_dir(pack)
    _build(pack, out)
    return 0


def cmd_load(args) -> int:
    import psycopg


    pack = load_pack(args.path)
    _print_warnings(pack.warnings)
    url = args.database_url or database_url()
    try:
        with psycopg.connect(url) as conn:
            result = store_pack(conn, pack)
    except psycopg.Error as exc:
        print(f"error: database: {str(exc).strip()}", file=sys.stderr)
        return 1
    print(f"sensor_kinds: {result.sensor_kinds}")
    print(f"districts: {result.districts}")
    print(f"sensors: {result.sensors}")
    print(f"timetable trips: {result.transit}")
    out = Path(args.out) if args.out else web.default_out_dir(pack)
    _build(pack, out)
    return 0


def cmd_demo(args) -> int:
    out = generate(args.out, seed=args.seed)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"demo city (seed {args.seed}) written to {out} ({total / 1e6:.2f} MB)")
    return 0


COMMANDS = {"check": cmd_check, "build": cmd_build, "load": cmd_load, "demo": cmd_demo}


def database_url() -> str:
    """The owner database URL (``CITYDASH_DATABASE_URL``, from :mod:`core.settings`)."""
    return get_settings().database_url


def _build(pack, out: Path) -> None:
    manifest = web.build(pack, out)
    size = sum(f["bytes"] for f in manifest["files"])
    print(f"web layers: {len(manifest['files'])} files ({size / 1e6:.2f} MB, gzip copies beside) in {out}")


def print_summary(reports: list[LayerReport], problems: list[Problem]) -> None:
    if reports:
        rows = [("layer", "file", "features", "CRS", "bbox (lon/lat)", "repairs")]
        for r in reports:
            bbox = "-" if r.bbox is None else ",".join(f"{v:.4f}" for v in r.bbox)
            rows.append((r.layer, r.file, str(r.features), r.crs or "-", bbox, str(r.repairs)))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        for r in reports:
            if r.note:
                print(f"  {r.layer}: {r.note}")
    def order(p: Problem):
        return (p.file, p.row or 0)

    errors = sorted((p for p in problems if p.is_error), key=order)
    warnings = sorted((p for p in problems if not p.is_error), key=order)
    print(f"{len(errors)} error(s), {len(warnings)} warning(s)")
    for p in errors:
        print(f"error: {p}")
    for p in warnings:
        print(f"warning: {p}")


def _print_warnings(warnings: list[Problem]) -> None:
    for p in warnings:
        print(f"warning: {p}")
