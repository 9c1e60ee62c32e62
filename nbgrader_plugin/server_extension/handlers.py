"""The two Tornado handlers: ``POST lti-exchange/tokens`` and ``GET lti-exchange/handoff``."""

from __future__ import annotations

import asyncio
import json
import secrets

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web

from nbgrader_plugin.server_extension.page import PROTOCOL, content_security_policy, render_page
from nbgrader_plugin.server_extension.settings import LtiExchangeHandoff
from nbgrader_plugin.server_extension.store import MAX_BODY_BYTES, HandoffRefused, store_tokens

TOKENS_PATH = "lti-exchange/tokens"
HANDOFF_PATH = "lti-exchange/handoff"
AUTH_RESOURCE = "contents"  # storing tokens writes a file in the user's home


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
            result = await loop.run_in_executor(None, store_tokens, self.handoff, body)
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


class HandoffPageHandler(_HandoffMixin, JupyterHandler):
    """``GET lti-exchange/handoff``: the page that relays tokens from the landing page."""

    @property
    def nonce(self) -> str:
        if not hasattr(self, "_lti_nonce"):
            self._lti_nonce = secrets.token_urlsafe(18)
        return self._lti_nonce

    @property
    def content_security_policy(self) -> str:
        # A policy of its own, replacing the server's: see page.content_security_policy.
        return content_security_policy(self.nonce)

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
        self.finish(render_page(self.nonce, config))
