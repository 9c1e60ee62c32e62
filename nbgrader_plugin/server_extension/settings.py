"""Settings of the hand-off (``c.LtiExchangeHandoff.*``) and the exchange URL it accepts.

The URL is ``c.LtiExchangeHandoff.service_url``, else nbgrader's ``c.Exchange.service_url`` (read
from ``nbgrader_config.py`` in the Jupyter config path and the server's root directory), else
``$LTI_EXCHANGE_URL``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from jupyter_core.paths import jupyter_config_path
from traitlets import Float, List, Unicode
from traitlets.config import Config, LoggingConfigurable
from traitlets.config.loader import (
    ConfigFileNotFound,
    JSONFileConfigLoader,
    PyFileConfigLoader,
)

from nbgrader_plugin.tokens import TokenStore


def origin_of(url: str) -> str:
    """The browser's serialisation of ``url``'s origin ('' if it is no http(s) URL)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return ""
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = 80 if scheme == "http" else 443
    return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")


def normalise_url(url: str) -> str:
    return url.strip().rstrip("/")


def load_nbgrader_config(root_dir: str, log: Any = None) -> Config:
    """nbgrader's config as nbgrader's own server extension sees it.

    ``nbgrader_config.py`` / ``.json`` from the Jupyter config path, with the server's root
    directory taking precedence (nbgrader reads its current directory, the root directory, last).
    """
    config = Config()
    directories = [root_dir, *jupyter_config_path()]
    for directory in reversed(directories):  # lowest precedence first
        for loader_class, name in (
            (PyFileConfigLoader, "nbgrader_config.py"),
            (JSONFileConfigLoader, "nbgrader_config.json"),
        ):
            try:
                config.merge(loader_class(name, path=directory, log=log).load_config())
            except ConfigFileNotFound:
                continue
            except Exception as exc:  # a broken config file must not break the hand-off page
                if log is not None:
                    log.warning("lti-exchange: cannot read %s in %s: %s", name, directory, exc)
    return config


class LtiExchangeHandoff(LoggingConfigurable):
    """Settings of the lti-exchange hand-off endpoints (``c.LtiExchangeHandoff.*``)."""

    service_url = Unicode(
        "",
        help="URL of the lti-exchange service whose tokens this server accepts. Default: "
        "nbgrader's c.Exchange.service_url, else $LTI_EXCHANGE_URL. When no URL is known, "
        "tokens of any http(s) service that accepts them are stored.",
    ).tag(config=True)

    allowed_origins = List(
        Unicode(),
        default_value=None,
        allow_none=True,
        help="Origins (scheme://host[:port]) whose pages may deliver tokens to the hand-off page "
        "by postMessage. Default: the origin of the exchange URL; nothing when no URL is known.",
    ).tag(config=True)

    verify_timeout = Float(
        15.0, help="Seconds to wait for the service to confirm a token (GET /api/v1/me)."
    ).tag(config=True)

    root_dir = Unicode(".", help="The server's root directory (where nbgrader_config.py is).")

    def exchange_settings(self) -> tuple[str, TokenStore]:
        """The configured exchange URL ('' if none) and the token store, as nbgrader sees them."""
        from nbgrader_plugin.exchange import Exchange

        exchange = Exchange(config=load_nbgrader_config(self.root_dir, self.log))
        url = normalise_url(self.service_url or exchange.service_url)
        return url, exchange.token_store

    def origins(self, service_url: str) -> list[str]:
        if self.allowed_origins is not None:
            origins = []
            for entry in self.allowed_origins:
                origin = origin_of(entry)
                if origin:
                    origins.append(origin)
                else:
                    self.log.warning("lti-exchange: ignoring allowed origin %r", entry)
            return origins
        origin = origin_of(service_url) if service_url else ""
        return [origin] if origin else []
