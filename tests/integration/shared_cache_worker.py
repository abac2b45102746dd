"""One "gunicorn worker" for tests/integration/test_shared_cache.py: a process of its own that builds
the app from CITYDASH_* variables, uses the shared cache, the public snapshot and the rate limit,
and prints what it saw as JSON."""
from __future__ import annotations

import json
import sys

from dashboard import cache
from dashboard.server import create_app


def main() -> None:
    app = create_app()
    computed = []
    value = cache.bucketed("test:shared", 3600, lambda: computed.append(1) or {"worker": sys.argv[1]})
    data = app.public_app.public_data
    snap = data.get()
    client = app.server.test_client()
    codes = [client.get("/public/_dash-layout").status_code for _ in range(int(sys.argv[2]))]
    print(json.dumps({"computed": bool(computed), "value": value, "refreshes": data.refreshes,
                      "snapshot_at": snap.computed_at.isoformat(), "codes": codes}))


if __name__ == "__main__":
    main()
