"""The one parser of MQTT broker URLs (``CITYDASH_MQTT_URL``).

``mqtt://[user[:password]@]host[:port]``: ``mqtt`` and ``tcp`` are plain TCP, default port
1883; ``mqtts`` and ``ssl`` are TLS, default port 8883.  User and password may be
percent-encoded (``p%40ss`` for ``p@ss``).  Any other scheme is a ``ValueError`` that names
the accepted ones (and never shows the password).  Used by the ingestor
(:mod:`ingest.service`), the simulator, the status page's broker check and the alert
publisher, so they all reach the same broker the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

PLAIN_SCHEMES = ("mqtt", "tcp")
TLS_SCHEMES = ("mqtts", "ssl")
DEFAULT_PORT = {False: 1883, True: 8883}
DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class MqttAddress:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # never the password
        secret = ", password='***'" if self.password is not None else ""
        return (f"MqttAddress(host={self.host!r}, port={self.port}, tls={self.tls}, "
                f"username={self.username!r}{secret})")


def parse_mqtt_url(url: str) -> MqttAddress:
    """``url`` as host, port, TLS flag, user and password; ValueError if it is not an MQTT URL."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in PLAIN_SCHEMES + TLS_SCHEMES:
        shown = f"{scheme}://" if scheme else "none"
        raise ValueError(f"unsupported MQTT URL scheme {shown} (use mqtt:// or tcp:// for plain "
                         "TCP, port 1883; mqtts:// or ssl:// for TLS, port 8883)")
    tls = scheme in TLS_SCHEMES
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"invalid port in MQTT URL for host {parts.hostname or DEFAULT_HOST!r} "
                         "(a number from 1 to 65535 expected)") from None
    if port == 0:
        raise ValueError("invalid port 0 in MQTT URL (a number from 1 to 65535 expected)")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return MqttAddress(parts.hostname or DEFAULT_HOST, port or DEFAULT_PORT[tls], tls,
                       username, password)
