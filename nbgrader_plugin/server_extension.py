"""A Jupyter server extension that takes the user's exchange tokens from the LTI landing page.

After an LTI launch the service's landing page opens ``<notebook URL template>lti-exchange/handoff``
(for a JupyterHub, e.g. ``https://hub.example.edu/hub/user-redirect/lti-exchange/handoff``) in a
new window. That page, served by the user's own Jupyter server, receives the tokens by
``postMessage`` from an allowed origin (never in a URL) and posts them, same-origin, to
``lti-exchange/tokens``, which checks them with the service (``GET /api/v1/me``) and writes them to
the user's token store -- the same store ``lti-exchange login`` writes and the nbgrader plugin
reads.

Message protocol (all messages are plain objects; ``protocol`` is 1):

- hand-off page -> ``window.opener``: ``{"type": "lti-exchange:ready", "protocol": 1}``
  (targetOrigin ``"*"``: it carries nothing secret);
- landing page -> hand-off page: ``{"type": "lti-exchange:tokens", "access_token": str,
  "refresh_token": str | null, "service_url": str}``, accepted only from an allowed origin;
- hand-off page -> the sender (targetOrigin = the sender's origin): ``{"type":
  "lti-exchange:stored", "protocol": 1, "ok": bool, "message": str, "code": str | null,
  "course_id"?, "username"?, "role"?}``.

Enabled by ``jupyter-config/jupyter_server_config.d/nbgrader_plugin.json``, which the package
installs. Settings: ``c.LtiExchangeHandoff.*`` in the Jupyter server's config; the exchange URL
is otherwise read from nbgrader's config (``c.Exchange.service_url``) or ``$LTI_EXCHANGE_URL``.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import secrets
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from jupyter_core.paths import jupyter_config_path
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web
from traitlets import Float, List, Unicode
from traitlets.config import Config, LoggingConfigurable
from traitlets.config.loader import (
    ConfigFileNotFound,
    JSONFileConfigLoader,
    PyFileConfigLoader,
)

from nbgrader_plugin.tokens import TokenEntry, TokenStore

PROTOCOL = 1
TOKENS_PATH = "lti-exchange/tokens"
HANDOFF_PATH = "lti-exchange/handoff"
MAX_TOKEN_CHARS = 8 * 1024
MAX_URL_CHARS = 2 * 1024
MAX_BODY_BYTES = 32 * 1024
# JWTs are base64url and dots; refresh tokens are URL-safe random strings. Nothing else, and
# never whitespace or control characters (they would end up in an HTTP header).
TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~+/=-]+")
AUTH_RESOURCE = "contents"  # storing tokens writes a file in the user's home

# One process writes the token store at a time (TokenStore.save reads, merges and replaces).
_store_lock = threading.Lock()


class HandoffRefused(Exception):
    """A request the extension refuses; ``str(error)`` is a message for the user."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


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

    # -- storing ------------------------------------------------------------------------------
    def store(self, body: Any) -> dict[str, Any]:
        """Check ``body`` and its token with the service, then save it. Runs in a thread."""
        access, refresh, service_url = validate_body(body)
        configured, store = self.exchange_settings()
        if configured and service_url != configured:
            raise HandoffRefused(
                400,
                f"These tokens are for the exchange at {service_url}, but this notebook server "
                f"uses the exchange at {configured}. Launch from the LMS course that uses this "
                "server, or ask your administrator to check c.Exchange.service_url.",
                "wrong_service",
            )
        me = self.verify(service_url, access)
        try:
            entry = TokenEntry.from_access_token(access, service_url, refresh)
        except ValueError as exc:
            raise HandoffRefused(400, f"That is not an access token ({exc}).", "bad_token") from exc
        try:
            with _store_lock:
                store.save(entry)
        except OSError as exc:
            raise HandoffRefused(
                500,
                f"Cannot write the token store {store.path} ({exc.strerror or exc}).",
                "store_failed",
            ) from exc
        self.log.info(
            "lti-exchange: stored tokens for course %s (user %s, role %s) in %s",
            entry.course_id,
            me.get("username"),
            me.get("role"),
            store.path,
        )
        return {
            "stored": True,
            "course_id": me.get("course_id") or entry.course_id,
            "course_title": me.get("course_title"),
            "username": me.get("username") or entry.username,
            "role": me.get("role") or entry.role,
            "service_url": service_url,
            "token_file": str(store.path),
        }

    def verify(self, service_url: str, access: str) -> dict[str, Any]:
        """``GET {service_url}/api/v1/me`` with the token: the service's word on who it is."""
        try:
            answer = requests.get(
                service_url + "/api/v1/me",
                headers={"Authorization": f"Bearer {access}", "Accept": "application/json"},
                timeout=self.verify_timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise HandoffRefused(
                502,
                f"Cannot reach the exchange at {service_url} ({exc.__class__.__name__}). "
                "Try again in a moment.",
                "service_unreachable",
            ) from exc
        if answer.status_code == 200:
            try:
                me = answer.json()
            except ValueError:
                me = None
            if isinstance(me, dict):
                return me
            raise HandoffRefused(
                502, f"The exchange at {service_url} gave an unreadable answer.", "bad_answer"
            )
        message, code = service_error(answer)
        if 400 <= answer.status_code < 500:
            raise HandoffRefused(400, f"The exchange refused the token: {message}", code)
        raise HandoffRefused(
            502, f"The exchange at {service_url} could not check the token: {message}", code
        )


def service_error(answer: requests.Response) -> tuple[str, str | None]:
    try:
        error = answer.json()["error"]
        return str(error["message"]), error.get("code")
    except (ValueError, KeyError, TypeError):
        return f"HTTP {answer.status_code}", None


def _token(body: dict, name: str, required: bool) -> str | None:
    value = body.get(name)
    if value is None or (value == "" and not required):
        if required:
            raise HandoffRefused(400, f"'{name}' is missing.", "bad_request")
        return None
    if not isinstance(value, str):
        raise HandoffRefused(400, f"'{name}' must be a string.", "bad_request")
    if len(value) > MAX_TOKEN_CHARS:
        raise HandoffRefused(
            400, f"'{name}' is longer than {MAX_TOKEN_CHARS} characters.", "bad_request"
        )
    if not TOKEN_CHARS.fullmatch(value):
        raise HandoffRefused(400, f"'{name}' is not a token.", "bad_request")
    return value


def validate_body(body: Any) -> tuple[str, str | None, str]:
    """``(access_token, refresh_token, service_url)`` from a JSON body, or ``HandoffRefused``."""
    if not isinstance(body, dict):
        raise HandoffRefused(400, "The body must be a JSON object.", "bad_request")
    access = _token(body, "access_token", required=True)
    refresh = _token(body, "refresh_token", required=False)
    url = body.get("service_url")
    if not isinstance(url, str) or not url.strip():
        raise HandoffRefused(400, "'service_url' is missing.", "bad_request")
    if len(url) > MAX_URL_CHARS:
        raise HandoffRefused(
            400, f"'service_url' is longer than {MAX_URL_CHARS} characters.", "bad_request"
        )
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise HandoffRefused(400, "'service_url' is not a URL.", "bad_request") from exc
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.query
        or parts.fragment
        or any(c.isspace() or ord(c) < 32 for c in url.strip())
    ):
        raise HandoffRefused(
            400,
            "'service_url' must be an http or https URL without credentials, query or fragment.",
            "bad_request",
        )
    return access, refresh, normalise_url(url)


class _HandoffMixin:
    auth_resource = AUTH_RESOURCE

    @property
    def handoff(self) -> LtiExchangeHandoff:
        return self.settings["lti_exchange_handoff"]  # type: ignore[attr-defined]


class TokensHandler(_HandoffMixin, APIHandler):
    """``POST lti-exchange/tokens``: check the posted tokens with the service and store them."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        self.set_header("Cache-Control", "no-store")
        try:
            if len(self.request.body) > MAX_BODY_BYTES:
                raise HandoffRefused(
                    400, f"The body is larger than {MAX_BODY_BYTES} bytes.", "bad_request"
                )
            try:
                body = json.loads(self.request.body or b"")
            except ValueError as exc:
                raise HandoffRefused(400, "The body is not JSON.", "bad_request") from exc
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(None, self.handoff.store, body)
        except HandoffRefused as refused:
            # The message never holds a token: it names fields, URLs and the service's words.
            self.log.warning(
                "lti-exchange: token hand-off refused (%d): %s", refused.status, refused
            )
            self.set_status(refused.status)
            self.finish(
                json.dumps({"stored": False, "message": str(refused), "code": refused.code})
            )
            return
        self.finish(json.dumps(result))


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Connecting your notebook server to the exchange</title>
<style nonce="{nonce}">
body {{ font-family: system-ui, sans-serif; margin: 3rem auto; max-width: 40rem;
       padding: 0 1rem; line-height: 1.5; color: #222; }}
#lti-exchange-status.ok {{ color: #11652b; }}
#lti-exchange-status.error {{ color: #a01010; }}
code {{ background: #f2f2f2; padding: 0 .25em; }}
</style>
</head>
<body>
<main>
<h1>Connecting your notebook server to the exchange</h1>
<p id="lti-exchange-status" role="status" aria-live="polite">Starting&hellip;</p>
<noscript><p>This page needs JavaScript. You can also store your tokens with
<code>lti-exchange login</code> in a terminal.</p></noscript>
<p>You can close this window when it says you are connected. If it does not work, run
<code>lti-exchange login --url URL --token TOKEN</code> in a terminal on this server.</p>
</main>
<script type="application/json" id="lti-exchange-handoff-config">{config}</script>
<script nonce="{nonce}">
{script}
</script>
</body>
</html>
"""

SCRIPT = r"""
(function () {
  "use strict";
  var config = JSON.parse(
    document.getElementById("lti-exchange-handoff-config").textContent
  );
  var statusEl = document.getElementById("lti-exchange-status");
  var allowed = config.allowed_origins || [];
  var busy = false;

  function show(text, state) {
    statusEl.textContent = text;
    statusEl.className = state || "";
  }

  function cookie(name) {
    var parts = document.cookie ? document.cookie.split(";") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (eq > 0 && parts[i].slice(0, eq).trim() === name) {
        return decodeURIComponent(parts[i].slice(eq + 1).trim());
      }
    }
    return null;
  }

  function reply(event, ok, message, extra) {
    var answer = {
      type: "lti-exchange:stored",
      protocol: config.protocol,
      ok: ok,
      message: message,
      code: (extra && extra.code) || null
    };
    if (ok && extra) {
      answer.course_id = extra.course_id;
      answer.username = extra.username;
      answer.role = extra.role;
    }
    try {
      if (event.source) { event.source.postMessage(answer, event.origin); }
    } catch (e) { /* the exchange page has gone away */ }
  }

  function optionalString(value) {
    return value === undefined || value === null || typeof value === "string";
  }

  window.addEventListener("message", function (event) {
    var data = event.data;
    if (!data || typeof data !== "object" || data.type !== "lti-exchange:tokens") { return; }
    if (allowed.indexOf(String(event.origin).toLowerCase()) === -1) {
      show("Ignored tokens sent by " + event.origin + ": this notebook server accepts tokens " +
           "only from " + (allowed.join(", ") || "no exchange (none is configured)") + ".",
           "error");
      return;
    }
    if (busy) { return; }
    if (typeof data.access_token !== "string" || typeof data.service_url !== "string" ||
        !optionalString(data.refresh_token)) {
      show("The exchange page sent an incomplete message.", "error");
      reply(event, false, "The message lacks access_token or service_url.",
            {code: "bad_request"});
      return;
    }
    busy = true;
    show("Checking your tokens with the exchange\u2026");
    var headers = {"Content-Type": "application/json", "Accept": "application/json"};
    var xsrf = config.xsrf_token || cookie("_xsrf");
    if (xsrf) { headers["X-XSRFToken"] = xsrf; }
    fetch(config.tokens_url, {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      headers: headers,
      body: JSON.stringify({
        access_token: data.access_token,
        refresh_token: data.refresh_token || null,
        service_url: data.service_url
      })
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        return {status: response.status, body: body || {}};
      });
    }).then(function (result) {
      var body = result.body;
      if (result.status === 200 && body.stored) {
        var text = "Connected: course " + body.course_id + " as " + body.role +
                   " (" + body.username + "). You can close this window.";
        show(text, "ok");
        reply(event, true, text, body);
      } else {
        var message = body.message || ("HTTP " + result.status);
        if (result.status === 403) {
          message = "This notebook server did not accept the request (" + message +
                    "). Reload this page and try again.";
        }
        show("Your tokens were not stored: " + message, "error");
        reply(event, false, message, body);
      }
    }, function (error) {
      var message = "Cannot reach this notebook server (" + error + ").";
      show("Your tokens were not stored: " + message, "error");
      reply(event, false, message, {code: "network"});
    }).then(function () { busy = false; });
  });

  if (allowed.length === 0) {
    show("This notebook server does not know which exchange to accept tokens from " +
         "(set c.Exchange.service_url in nbgrader_config.py, or " +
         "c.LtiExchangeHandoff.allowed_origins). Use lti-exchange login instead.", "error");
  } else if (window.opener && window.opener !== window) {
    show("Waiting for your tokens from the exchange page\u2026");
    window.opener.postMessage({type: "lti-exchange:ready", protocol: config.protocol}, "*");
  } else {
    show("Open this page with the button on the exchange's page after launching the " +
         "assignment from your LMS, or use lti-exchange login in a terminal.", "error");
  }
})();
"""


def _script_json(value: Any) -> str:
    """JSON that is safe inside a <script> element (no '<', '>' or '&' left to parse)."""
    return (
        json.dumps(value)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


class HandoffPageHandler(_HandoffMixin, JupyterHandler):
    """``GET lti-exchange/handoff``: the page that relays tokens from the landing page."""

    @property
    def nonce(self) -> str:
        if not hasattr(self, "_lti_nonce"):
            self._lti_nonce = secrets.token_urlsafe(18)
        return self._lti_nonce

    @property
    def content_security_policy(self) -> str:
        # A policy of its own: this page runs one inline script (by nonce) and talks only to
        # this server; nobody may frame it.
        return "; ".join(
            [
                "default-src 'none'",
                f"script-src 'nonce-{self.nonce}'",
                f"style-src 'nonce-{self.nonce}'",
                "connect-src 'self'",
                "base-uri 'none'",
                "form-action 'none'",
                "frame-ancestors 'none'",
            ]
        )

    @web.authenticated
    @authorized
    async def get(self) -> None:
        loop = asyncio.get_running_loop()
        service_url, _store = await loop.run_in_executor(None, self.handoff.exchange_settings)
        config = {
            "protocol": PROTOCOL,
            "tokens_url": url_path_join(self.base_url, TOKENS_PATH),
            "allowed_origins": self.handoff.origins(service_url),
            "xsrf_token": self.xsrf_token.decode("ascii"),
        }
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("X-Frame-Options", "DENY")  # with frame-ancestors 'none', for old browsers
        self.set_header("X-Content-Type-Options", "nosniff")
        # The landing page that opened this window must keep its handle on it.
        self.set_header("Cross-Origin-Opener-Policy", "unsafe-none")
        self.finish(
            PAGE.format(
                nonce=html.escape(self.nonce, quote=True),
                config=_script_json(config),
                script=SCRIPT,
            )
        )


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nbgrader_plugin.server_extension"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    handoff = LtiExchangeHandoff(parent=serverapp)
    handoff.root_dir = str(Path(serverapp.root_dir).expanduser())
    web_app = serverapp.web_app
    web_app.settings["lti_exchange_handoff"] = handoff
    base_url = web_app.settings.get("base_url", "/")
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base_url, TOKENS_PATH), TokensHandler),
            (url_path_join(base_url, HANDOFF_PATH), HandoffPageHandler),
        ],
    )
    serverapp.log.info("lti-exchange: token hand-off at %s", url_path_join(base_url, HANDOFF_PATH))


# jupyter_server < 2 / notebook style name
load_jupyter_server_extension = _load_jupyter_server_extension
