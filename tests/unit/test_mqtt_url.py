"""core.mqtt_url: the one MQTT URL parser (ingestor, simulator, status page, alert publisher)."""
from __future__ import annotations

import pytest

from core.mqtt_url import MqttAddress, parse_mqtt_url


@pytest.mark.parametrize("url, expected", [
    ("mqtt://broker", MqttAddress("broker", 1883, False)),
    ("tcp://broker", MqttAddress("broker", 1883, False)),
    ("mqtts://broker", MqttAddress("broker", 8883, True)),
    ("ssl://broker", MqttAddress("broker", 8883, True)),  # was sent to 1883 by the status page
    ("MQTTS://Broker.Example:9999", MqttAddress("broker.example", 9999, True)),
    ("mqtt://127.0.0.1:1884", MqttAddress("127.0.0.1", 1884, False)),
    ("mqtt://[::1]:1883", MqttAddress("::1", 1883, False)),
    ("mqtt://", MqttAddress("127.0.0.1", 1883, False)),
    ("mqtts://ingest:s3cret@broker:8884", MqttAddress("broker", 8884, True, "ingest", "s3cret")),
    ("mqtt://ingest@broker", MqttAddress("broker", 1883, False, "ingest", None)),
    ("mqtt://in%40gest:p%40ss%3Aword@broker", MqttAddress("broker", 1883, False, "in@gest", "p@ss:word")),
    ("mqtt://ingest:@broker", MqttAddress("broker", 1883, False, "ingest", "")),
])
def test_parse(url, expected):
    assert parse_mqtt_url(url) == expected


@pytest.mark.parametrize("url", ["http://broker:1883", "ws://broker", "broker:1883", "", "mqtt+ssl://b"])
def test_other_schemes_are_refused_clearly(url):
    with pytest.raises(ValueError, match="unsupported MQTT URL scheme .*mqtt://.*mqtts://"):
        parse_mqtt_url(url)


@pytest.mark.parametrize("url", ["mqtt://broker:70000", "mqtt://broker:port", "mqtt://broker:0"])
def test_bad_ports_are_refused(url):
    with pytest.raises(ValueError, match="port"):
        parse_mqtt_url(url)


def test_the_password_never_shows():
    address = parse_mqtt_url("mqtt://u:hunter2@broker")
    assert "hunter2" not in repr(address) and "***" in repr(address)
    with pytest.raises(ValueError) as info:
        parse_mqtt_url("http://u:hunter2@broker")
    assert "hunter2" not in str(info.value)
