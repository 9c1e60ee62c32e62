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
  "course_id"?, "username"?, "role"?}``. Also sent, with ``ok: false``, when tokens come from an
  origin this server does not accept (``code: "wrong_exchange"``; the accepted exchange is not
  named), and to ``window.opener`` (targetOrigin ``"*"``, nothing secret) instead of ``ready``
  when no exchange URL is configured (``code: "no_exchange"``), so the landing page can say why.

Modules: ``settings`` (``c.LtiExchangeHandoff.*`` and the exchange URL), ``store`` (checking and
saving tokens), ``page`` (the page, from ``templates/`` and ``static/``), ``handlers`` (the two
endpoints), ``enable`` (the config file that turns the extension on). Enabled by
``jupyter-config/jupyter_server_config.d/nbgrader_plugin.json``, which a wheel install puts in
place; for editable installs run ``lti-exchange handoff enable``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nbgrader_plugin.server_extension"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from jupyter_server.utils import url_path_join

    from nbgrader_plugin.server_extension.handlers import (
        HANDOFF_PATH,
        TOKENS_PATH,
        HandoffPageHandler,
        TokensHandler,
    )
    from nbgrader_plugin.server_extension.settings import LtiExchangeHandoff

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
