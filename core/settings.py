"""The one settings table of citydash.

Every setting is declared once, below, as a field with its default and its
help text.  Values come from ``CITYDASH_<NAME>`` environment variables or from
a ``.env`` file in the working directory.  ``docs/configuration.md`` documents
each one (``tests/unit/test_settings.py`` fails when one is missing there).

Secrets (passwords inside URLs, the session secret) are masked by
:func:`describe` and never logged: the session secret is a ``SecretStr``
(read it with :meth:`Settings.secret_value`), and the repr of a ``Settings``
shows URLs with their passwords as ``***``.  Settings with a fixed set of
values are ``Literal`` types, so a typo fails at start-up.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BeforeValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRET_SETTINGS = {"secret_key"}
URL_SETTINGS = {
    "database_url",
    "ingest_database_url",
    "reader_database_url",
    "public_database_url",
    "mqtt_url",
    "cache_redis_url",
}


def _upper(value):
    return value.upper() if isinstance(value, str) else value


LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CITYDASH_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- databases -------------------------------------------------------
    database_url: str = Field(
        "postgresql://citydash@127.0.0.1:5432/citydash",
        description="Owner connection (migrations, city-pack loading). PostgreSQL URL.",
    )
    ingest_database_url: str = Field(
        "",
        description="Connection of the ingestor (role citydash_ingest). Empty: database_url "
        "with the user replaced by citydash_ingest and no password.",
    )
    reader_database_url: str = Field(
        "",
        description="Connection of the dashboard (role citydash_reader). Empty: derived like "
        "ingest_database_url.",
    )
    public_database_url: str = Field(
        "",
        description="Connection of the public app (role citydash_public). Empty: derived like "
        "ingest_database_url.",
    )
    db_pool_size: int = Field(4, description="Connections per process in the dashboard's pool.")

    # --- MQTT ------------------------------------------------------------
    mqtt_url: str = Field(
        "mqtt://127.0.0.1:1883",
        description="Broker URL, mqtt://[user:password@]host:port (mqtts:// for TLS).",
    )
    mqtt_client_id: str = Field(
        "citydash-ingest",
        description="Client id of the ingestor's persistent session; unique per ingestor process.",
    )
    mqtt_session_expiry_s: int = Field(
        7 * 24 * 3600,
        description="How long the broker keeps the ingestor's session and queued messages "
        "while it is offline (MQTT v5 Session Expiry Interval), seconds.",
    )
    mqtt_routes: str = Field(
        "",
        description="Routing table: 'topic-filter=decoder' pairs separated by ';' (decoders: "
        "native, senml, ngsi, ttn, hfp). Empty: the built-in table in docs/configuration.md.",
    )
    mqtt_shared_group: str = Field(
        "",
        description="When set, subscribe through $share/<group>/... so several ingestors split "
        "the stream.",
    )
    mqtt_keepalive_s: int = Field(30, description="MQTT keep-alive interval, seconds.")

    # --- ingest ----------------------------------------------------------
    batch_size: int = Field(10000, description="Rows-bearing messages per database batch.")
    batch_max_age_ms: int = Field(
        250, description="Longest a message waits in the buffer before its batch is flushed, ms."
    )
    max_in_flight: int = Field(
        60000,
        description="Most unacknowledged messages held in memory; when reached the ingestor "
        "stops reading and the broker holds the rest. Also sent as MQTT Receive Maximum "
        "(capped at 65535).",
    )
    max_payload_bytes: int = Field(
        65536, description="Larger payloads are dead-lettered without decoding."
    )
    dead_letter_payload_cap: int = Field(
        8192, description="Bytes of a rejected payload kept in dead_letters."
    )
    dead_letter_retention_days: int = Field(
        30, ge=1, description="Dead letters older than this are deleted by the ingestor's retention job."
    )
    max_future_s: int = Field(
        300, description="Readings stamped further than this in the future are rejected, seconds."
    )
    metrics_host: str = Field("127.0.0.1", description="Bind address of the ingestor's "
                              "Prometheus /metrics and /healthz endpoint.")
    metrics_port: int = Field(9108, description="Port of the ingestor's /metrics and /healthz; "
                              "0 disables it.")
    db_retry_max: int = Field(
        5, ge=0, description="Retries of a batch that fails with a transient database error "
        "(deadlock, insufficient resources, operator intervention: core/dberrors.py), with "
        "backoff; then the batch is bisected and the messages that still fail are dead-lettered "
        "with the error. Errors that leave no connection (database down) are retried without bound.")
    flush_stuck_warn_s: float = Field(
        30.0, gt=0, description="A warning is logged (and repeated at this interval) while a batch "
        "has waited longer than this for its commit, seconds.")
    mqtt_socket_rcvbuf_bytes: int = Field(
        4 * 1024 * 1024, ge=0, description="Receive buffer (SO_RCVBUF) of the ingestor's broker "
        "socket, bytes, so that bursts wait in the kernel rather than at the broker; 0: the "
        "system default.")
    mqtt_block_reader: bool = Field(
        True, description="Read the broker socket in 256 KB blocks and send a batch's PUBACKs in "
        "one write (ingest/mqtt_client.py); used only with a paho-mqtt version it was checked "
        "against, else stock paho. false: always stock paho.")
    mqtt_loop_stall_s: float = Field(
        60.0, gt=0, description="A paho callback running longer than this means the MQTT network "
        "loop is stuck; the ingestor then exits non-zero for its supervisor to restart it (a dead "
        "network thread is restarted in-process), seconds.")

    # --- retention -------------------------------------------------------
    raw_retention_days: int = Field(
        30, description="Raw readings older than this are dropped (drop_chunks)."
    )
    rollup_1m_retention_days: int = Field(
        90, description="1-minute rollups older than this are dropped; 1-hour rollups are kept."
    )

    # --- KPI jobs (ingest/jobs.py) -----------------------------------------
    jobs_enabled: bool = Field(
        True, description="Run the rollup, retention and alert jobs in the ingestor. With several "
        "ingestors each may run them; an advisory lock lets one at a time work.")
    rollup_interval_s: int = Field(
        30, description="Seconds between rollup runs (1-minute and 1-hour rollups of the buckets "
        "touched since, and the materialised KPI series).")
    retention_interval_s: int = Field(3600, description="Seconds between retention runs (drop_chunks).")
    alert_interval_s: int = Field(60, description="Seconds between alert evaluations.")
    alert_close_after_s: int = Field(
        3600, description="A resolved alert is closed this many seconds after it resolved.")
    anomaly_weeks: int = Field(
        8, description="Weeks of history (same hour of the week) behind the anomaly baseline.")
    kpi_backfill_1m_days: int = Field(
        3, description="When a KPI is new or its definition changed, its 1-minute series is "
        "materialised this many days back (older 1-minute views are computed live).")
    kpi_backfill_1h_days: int = Field(
        90, description="Likewise for the 1-hour series, days.")

    # --- local stack (make stack / make run) ------------------------------
    stack_pg_port: int = Field(0, description="Port of the local stack's TimescaleDB; 0: 5432 "
                               "when free, else a free port kept in var/ports.env.")
    stack_mqtt_port: int = Field(0, description="Port of the local stack's Mosquitto; 0: 1883 "
                                 "when free, else a free port kept in var/ports.env.")

    # --- city ------------------------------------------------------------
    city_pack: str = Field("layers/demo_city", description="Folder of the city pack to serve.")

    # --- simulator (python -m ingest simulate, docs/simulator.md) ----------
    simulate_seed: int = Field(1, description="Seed of the simulator: the same seed gives the "
                               "same city, readings, incidents and faults.")
    simulate_interval_s: float = Field(30.0, description="Seconds of simulated time between two "
                                       "reports of one sensor (--interval).")
    simulate_vehicle_interval_s: float = Field(10.0, description="Seconds of simulated time "
                                               "between two positions of one vehicle.")
    simulate_formats: str = Field(
        "native=70,senml=10,ngsi=10,ttn=10",
        description="Share of sensors publishing in each format: native, senml, ngsi (NGSI-LD), "
        "ttn (The Things Stack uplinks); vehicles always use the native format.")
    simulate_connections: int = Field(1, description="MQTT connections (one process each) the "
                                      "simulator publishes on; more for higher rates.")
    simulate_client_id: str = Field("citydash-sim", description="MQTT client id of the "
                                    "simulator (suffixed -0, -1, ... with several connections).")
    simulate_backfill_days: float = Field(2.0, description="make run: days of history the "
                                          "simulator writes on first start (0: none).")
    simulate_backfill_interval_s: float = Field(300.0, description="make run: seconds between "
                                                "two readings of one sensor in that history.")
    layers_dir: str = Field("var/layers", description="Folder of the built web layers; each city "
                            "pack gets a sub-folder named after its slug, built on first use.")

    # --- dashboard -------------------------------------------------------
    host: str = Field("127.0.0.1", description="Bind address of the development server.")
    port: int = Field(8050, description="Port of the dashboard.")
    secret_key: SecretStr = Field(
        SecretStr(""),
        description="Secret that signs sessions. Empty: a random one per process (sessions do "
        "not survive a restart).",
    )
    cache_redis_url: str = Field(
        "", description="Redis URL for the shared server-side cache; empty: per-process memory."
    )
    # --- wall screen (/wall, dashboard/pages/wall.py) ---------------------
    wall_refresh_s: int = Field(
        5, description="Seconds between refreshes of the wall screen (/wall); ?refresh= overrides "
        "it per screen (1 to 3600).")
    wall_cache_s: int = Field(
        30, description="Time bucket of the wall's cached KPI values, seconds: every screen gets "
        "the same result within a bucket (KPI rollups run every rollup_interval_s anyway).")
    wall_stale_after_s: int = Field(
        180, description="The wall shows a stale-data banner when the newest reading is older "
        "than this, seconds.")
    map_tile_url: str = Field(
        "", description="Optional XYZ raster tile URL template of the city's own tile server "
        "(e.g. https://tiles.example.city/{z}/{x}/{y}.png) drawn under the maps; empty: the city "
        "pack's layers only, no tile requests.")
    # --- sign-in, security headers, public view (dashboard/auth, security.py, public/) --
    environment: Literal["production", "development"] = Field(
        "production", description="'production' or 'development'. Debug mode and session cookies "
        "over plain HTTP are only allowed in development.")
    auth_mode: Literal["builtin", "proxy", "none"] = Field(
        "builtin", description="Sign-in for /wall, /explore, /api and the other internal pages: "
        "'builtin' (users in the database, `python -m dashboard users add`), 'proxy' (a trusted "
        "reverse proxy's header names the user, for the city's single sign-on) or 'none' (no "
        "sign-in; refused unless environment is development). See docs/auth.md.")
    auth_proxy_user_header: str = Field(
        "X-Forwarded-User", description="auth_mode=proxy: request header holding the user name.")
    auth_proxy_role_header: str = Field(
        "", description="auth_mode=proxy: request header holding the role (viewer, planner, "
        "operator, admin), opt-in: empty (the default) reads no role header, so roles come from the "
        "users table, else auth_proxy_default_role. Set it only when the sign-in proxy sets this "
        "header itself and drops it from every client request (e.g. X-Forwarded-Role).")
    auth_proxy_default_role: Literal["viewer", "planner", "operator", "admin"] = Field(
        "viewer", description="auth_mode=proxy: role of a signed-in user the proxy and the users "
        "table give no role for.")
    auth_proxy_trusted: str = Field(
        "127.0.0.1,::1", description="auth_mode=proxy: comma-separated addresses of the reverse "
        "proxies whose user header is trusted; the header from anyone else is ignored.")
    secret_key_file: str = Field(
        "var/secret_key", description="When secret_key is empty: file holding a generated secret "
        "(created on first start, mode 0600), shared by the server processes of this machine. "
        "Several machines: set secret_key.")
    session_hours: float = Field(12, description="A sign-in lasts this many hours.")
    session_cookie_secure: bool = Field(
        True, description="Send the session cookie over HTTPS only (turned off in development).")
    max_request_bytes: int = Field(
        1 << 20, ge=1024, description="Largest request body the dashboard reads, in bytes (Flask's "
        "MAX_CONTENT_LENGTH on every route; larger bodies get 413 before they are read). The "
        "front server's client_max_body_size (deploy/nginx/citydash.conf) is the same 1 MiB.")
    proxy_count: int = Field(
        0, description="Reverse proxies in front of the dashboard that set X-Forwarded-For/-Proto; "
        "the client address used for rate limits is taken from them.")
    login_rate_limit: str = Field(
        "10 per minute", description="Sign-in attempts per client address (flask-limiter syntax).")
    public_rate_limit: str = Field(
        "600 per minute", description="Requests per client address to the public view /public/ "
        "(flask-limiter syntax; one page view is about 10 requests).")
    public_frame_ancestors: str = Field(
        "'self'", description="Who may embed the public view in an iframe: CSP frame-ancestors "
        "sources separated by spaces, e.g. \"'self' https://www.city.gov.br\". Every other page "
        "refuses framing.")
    public_delay_s: int = Field(
        0, description="Publication delay of the public view, seconds (e.g. 900: nothing newer "
        "than 15 minutes is shown). Enforced by the public_view database views.")
    public_refresh_s: int = Field(
        60, description="The public view's figures are recomputed at most once per this many "
        "seconds, whatever the number of viewers (server-side cache).")
    audit_retention_days: int = Field(
        365, description="Audit-log entries older than this are deleted by the ingestor's "
        "retention job (every `CITYDASH_RETENTION_INTERVAL_S`) and by `python -m dashboard audit purge`.")
    # --- planner explorer and read API (/explore, /api/v1; dashboard/pages/explore.py) --
    explore_cache_s: int = Field(
        30, description="Time bucket of the explorer's cached map frames and series, seconds "
        "(every planner asking for the same view within a bucket gets the same result).")
    explore_max_points: int = Field(
        5000, description="Most sensor markers the explorer's map sends; beyond that sensors are "
        "aggregated on a server-side grid (one marker per cell with a count).")
    debug: bool = Field(False, description="Dash debug mode; only for development.")
    log_level: LogLevel = Field("INFO", description="Python log level.")
    log_format: Literal["json", "text"] = Field("json", description="'json' for structured logs, 'text' for humans.")

    def secret_value(self, name: str) -> str:
        """The clear text of a secret setting (a ``SecretStr``; a plain ``str`` set by
        ``model_copy(update=...)``, which does not validate, is returned as it is)."""
        value = getattr(self, name)
        return value.get_secret_value() if isinstance(value, SecretStr) else str(value)

    def __repr_args__(self):
        for name, value in super().__repr_args__():
            if name in URL_SETTINGS and isinstance(value, str):
                try:
                    value = mask_url(value)
                except ValueError:  # not even a URL: show nothing of it
                    value = "***"
            yield name, value

    def role_url(self, role: str) -> str:
        """URL for a least-privilege role: ``ingest``, ``reader`` or ``public``."""
        explicit = getattr(self, f"{role}_database_url")
        if explicit:
            return explicit
        return replace_user(self.database_url, f"citydash_{role}")


def replace_user(url: str, user: str) -> str:
    """``url`` with its user set to ``user`` and its password removed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def describe(settings: Settings) -> list[tuple[str, str, str]]:
    """(env name, current value with secrets masked, help) for every setting."""
    rows = []
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if name in SECRET_SETTINGS or isinstance(value, SecretStr):
            shown = "***" if value else ""
        elif name in URL_SETTINGS:
            shown = mask_url(str(value))
        else:
            shown = str(value)
        rows.append((f"CITYDASH_{name.upper()}", shown, field.description or ""))
    return rows


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
