"""Settings: defaults < config file (TOML) < ``LTI_EXCHANGE_*`` environment, validated once."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from lti_exchange.archives.ceilings import MAX_MEMBERS_CEILING, MAX_UNPACKED_CEILING

ENV_PREFIX = "LTI_EXCHANGE_"
# Threads per gunicorn worker (config/gunicorn.conf.py, LTI_EXCHANGE_THREADS): each keeps one
# pooled database connection, so the pool is as large by default.
DEFAULT_THREADS = 10


class SettingsError(ValueError):
    """A setting has a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    """Every knob of the service. Each field may be set as ``LTI_EXCHANGE_<NAME>``."""

    data_dir: str = "./lti-exchange-data"
    database_url: str = ""
    storage_url: str = ""
    base_url: str = ""
    bind: str = ""
    frame_origins: str = ""
    keys_dir: str = ""
    config: str = ""
    access_token_ttl: int = 3600
    key_rotation_overlap: int = 7 * 24 * 3600
    key_activation_delay: int = 300  # a new key signs once every replica has read it
    max_upload_bytes: int = 2 * 1024**3
    max_unpacked_bytes: int = 4 * 1024**3
    max_archive_members: int = 10_000
    auto_migrate: bool | None = None
    log_level: str = "INFO"
    log_format: str = "text"  # text | json (lti_exchange/logging_setup.py)
    db_pool_size: int = DEFAULT_THREADS  # one connection per thread of a worker
    expose_query_count: bool = False
    refresh_token_ttl: int = 30 * 24 * 3600
    lti_clock_leeway: int = 60
    lti_iat_max_age: int = 600
    lti_username_rule: str = "preferred_username,email_local_part,lis_person_sourcedid,sub"
    lti_course_id_param: str = "nbgrader_course_id"
    lti_trusted_audiences: str = ""
    trusted_proxies: int = 0
    secure_cookies: bool | None = None
    roster_sync_interval: int = 3600
    storage_min_free_bytes: int = 64 * 1024**2
    partial_upload_grace: int = 3600
    s3_part_size: int = 8 * 1024**2
    s3_endpoint_url: str = ""
    s3_region: str = ""

    @property
    def resolved_data_dir(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir / 'lti-exchange.sqlite3'}"

    @property
    def resolved_storage_url(self) -> str:
        if self.storage_url:
            return self.storage_url
        return (self.resolved_data_dir / "storage").as_uri()

    @property
    def resolved_keys_dir(self) -> Path:
        if self.keys_dir:
            return Path(self.keys_dir).expanduser().resolve()
        return self.resolved_data_dir / "keys"

    @property
    def uses_embedded_database(self) -> bool:
        return not self.database_url

    @property
    def should_auto_migrate(self) -> bool:
        """Migrate on start-up: by default only the embedded SQLite database is migrated."""
        if self.auto_migrate is None:
            return self.uses_embedded_database
        return self.auto_migrate

    @property
    def public_base_url(self) -> str:
        """Where the LMS reaches us: ``base_url``, else ``http://<bind>`` for a concrete address
        (``serve`` sets ``bind``); "" when unknown (wildcard or socket bind). Never ``Host``."""
        if self.base_url:
            return self.base_url.rstrip("/")
        from lti_exchange.public_url import url_from_bind

        return url_from_bind(self.bind)

    @property
    def token_issuer(self) -> str:
        """The ``iss`` of our tokens: the public base URL, or a fixed name when none is set."""
        return self.base_url.rstrip("/") if self.base_url else "lti-exchange"


def _coerce(name: str, kind: Any, raw: Any) -> Any:
    text = str(raw).strip()
    if kind in (int, "int"):
        try:
            return int(text)
        except ValueError as exc:
            raise SettingsError(
                f"{ENV_PREFIX}{name.upper()} must be an integer, got {text!r}"
            ) from exc
    if kind in (bool, "bool", "bool | None"):
        if isinstance(raw, bool):
            return raw
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        if lowered in ("", "auto") and kind == "bool | None":
            return None
        raise SettingsError(f"{ENV_PREFIX}{name.upper()} must be true or false, got {text!r}")
    return text


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the settings from defaults, the optional config file, the environment and overrides."""
    environ = os.environ if environ is None else environ
    known = {f.name: f for f in fields(Settings)}
    values: dict[str, Any] = {}

    config_path = overrides.get("config") or environ.get(f"{ENV_PREFIX}CONFIG", "")
    if config_path:
        path = Path(config_path).expanduser()
        try:
            with path.open("rb") as fh:
                file_values = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise SettingsError(f"Config file {path} does not exist ({ENV_PREFIX}CONFIG).") from exc
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"Config file {path} is not valid TOML: {exc}") from exc
        for key, raw in file_values.items():
            name = key.lower()
            if name not in known:
                raise SettingsError(f"Unknown setting {key!r} in {path}.")
            values[name] = _coerce(name, known[name].type, raw)
        values["config"] = str(path)

    for name, spec in known.items():
        env_name = f"{ENV_PREFIX}{name.upper()}"
        if env_name in environ:
            values[name] = _coerce(name, spec.type, environ[env_name])
    for name, raw in overrides.items():
        if name not in known:
            raise SettingsError(f"Unknown setting {name!r}.")
        if raw is not None:
            values[name] = raw
    settings = Settings(**values)
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    for name in (
        "access_token_ttl",
        "max_upload_bytes",
        "max_unpacked_bytes",
        "max_archive_members",
        "refresh_token_ttl",
        "lti_iat_max_age",
        "partial_upload_grace",
    ):
        if getattr(settings, name) <= 0:
            raise SettingsError(f"{ENV_PREFIX}{name.upper()} must be positive.")
    # The most the nbgrader plugin unpacks from one archive: an archive the exchange accepts
    # must be one every student's and instructor's plugin can unpack.
    if settings.max_archive_members > MAX_MEMBERS_CEILING:
        raise SettingsError(
            f"{ENV_PREFIX}MAX_ARCHIVE_MEMBERS must be at most {MAX_MEMBERS_CEILING} (the most "
            "the nbgrader plugin unpacks from one archive)."
        )
    if settings.max_unpacked_bytes > MAX_UNPACKED_CEILING:
        raise SettingsError(
            f"{ENV_PREFIX}MAX_UNPACKED_BYTES must be at most {MAX_UNPACKED_CEILING} (1 TiB, the "
            "most the nbgrader plugin unpacks from one archive)."
        )
    if settings.storage_min_free_bytes < 0:
        raise SettingsError(f"{ENV_PREFIX}STORAGE_MIN_FREE_BYTES must be 0 or more.")
    if settings.key_activation_delay < 0:
        raise SettingsError(f"{ENV_PREFIX}KEY_ACTIVATION_DELAY must be 0 or more (seconds).")
    if not 5 * 1024**2 <= settings.s3_part_size <= 5 * 1024**3:
        raise SettingsError(f"{ENV_PREFIX}S3_PART_SIZE must be between 5 MiB and 5 GiB (bytes).")
    if settings.log_format.strip().lower() not in ("text", "json"):
        raise SettingsError(f"{ENV_PREFIX}LOG_FORMAT must be text or json.")
    url = settings.resolved_database_url
    if not url.startswith(("sqlite", "postgresql", "mysql", "mariadb")):
        raise SettingsError(
            f"{ENV_PREFIX}DATABASE_URL must be a sqlite, postgresql+psycopg or mysql+pymysql URL."
        )
    if not settings.resolved_storage_url.startswith(("file://", "s3://")):
        raise SettingsError(f"{ENV_PREFIX}STORAGE_URL must start with file:// or s3://.")
