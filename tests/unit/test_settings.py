"""The settings table: every setting documented, secrets masked, roles derived."""
from __future__ import annotations

from pathlib import Path

from core.settings import Settings, describe, mask_url, replace_user

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_is_documented():
    text = DOCS.read_text()
    missing = [f"CITYDASH_{name.upper()}" for name in Settings.model_fields
               if f"`CITYDASH_{name.upper()}`" not in text]
    assert missing == [], f"settings missing from docs/configuration.md: {missing}"


def test_every_setting_has_help():
    assert all(field.description for field in Settings.model_fields.values())


def test_environment_and_dotenv(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text("CITYDASH_BATCH_SIZE=123\nCITYDASH_MQTT_CLIENT_ID=from-dotenv\n")
    monkeypatch.setenv("CITYDASH_MQTT_CLIENT_ID", "from-env")
    s = Settings(_env_file=env_file)
    assert s.batch_size == 123
    assert s.mqtt_client_id == "from-env"  # the environment wins over .env


def test_secrets_are_masked():
    s = Settings(_env_file=None, database_url="postgresql://owner:hunter2@db.example:5432/city",
                 mqtt_url="mqtt://ingest:s3cret@broker:1883", secret_key="very-secret")
    shown = "\n".join(f"{n}={v}" for n, v, _ in describe(s))
    for secret in ("hunter2", "s3cret", "very-secret"):
        assert secret not in shown
    assert "postgresql://owner:***@db.example:5432/city" in shown
    assert "CITYDASH_SECRET_KEY=***" in shown


def test_mask_url_without_password_is_unchanged():
    assert mask_url("mqtt://127.0.0.1:1883") == "mqtt://127.0.0.1:1883"


def test_role_urls_are_derived_or_explicit():
    s = Settings(_env_file=None, database_url="postgresql://owner:pw@127.0.0.1:5544/citydash")
    assert s.role_url("ingest") == "postgresql://citydash_ingest@127.0.0.1:5544/citydash"
    explicit = Settings(_env_file=None, reader_database_url="postgresql://r:x@h/db")
    assert explicit.role_url("reader") == "postgresql://r:x@h/db"
    assert replace_user("postgresql://a@[::1]:5/d", "b") == "postgresql://b@[::1]:5/d"


def test_choices_are_checked():
    import pytest
    from pydantic import ValidationError

    for field, bad in [("auth_mode", "bulitin"), ("environment", "prod"), ("log_format", "xml"),
                       ("auth_proxy_default_role", "root"), ("log_level", "LOUD")]:
        with pytest.raises(ValidationError, match=field):
            Settings(_env_file=None, **{field: bad})
    assert Settings(_env_file=None, log_level="debug").log_level == "DEBUG"  # as logging takes it
    defaults = {name: Settings.model_fields[name].default
                for name in ("auth_mode", "environment", "log_format", "log_level")}
    assert defaults == {"auth_mode": "builtin", "environment": "production", "log_format": "json",
                        "log_level": "INFO"}


def test_secrets_stay_out_of_reprs_and_logs(monkeypatch):
    from pydantic import SecretStr

    monkeypatch.setenv("CITYDASH_SECRET_KEY", "from-the-env")
    s = Settings(_env_file=None, database_url="postgresql://owner:hunter2@db/city",
                 mqtt_url="mqtts://ingest:s3cret@broker:8883")
    assert isinstance(s.secret_key, SecretStr) and s.secret_value("secret_key") == "from-the-env"
    for text in (repr(s), str(s), f"{s!r}"):
        for secret in ("from-the-env", "hunter2", "s3cret"):
            assert secret not in text
    assert "postgresql://owner:***@db/city" in repr(s)
    copy = s.model_copy(update={"secret_key": "plain"})  # tests update without validation
    assert copy.secret_value("secret_key") == "plain"
    assert dict((n, v) for n, v, _ in describe(copy))["CITYDASH_SECRET_KEY"] == "***"
    assert Settings(_env_file=None, secret_key="").secret_value("secret_key") == ""
