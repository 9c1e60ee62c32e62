"""LTI Dynamic Registration on the simulated LMS (1EdTech LTI-DR 1.0, platform side).

``RegisteringPlatform`` is a ``SimulatedPlatform`` whose issuer is its own URL (the tool checks
that the issuer is a prefix of the configuration URL) and that also serves:

- ``GET /.well-known/openid-configuration``: its OpenID configuration with the LTI platform
  configuration object; ``config_override`` (keys to replace, ``None`` removes one) and
  ``config_body`` (raw bytes instead of the document; ``config_chunked`` sends them in chunks
  without a length) make it wrong or hostile;
- ``POST /register``: checks the ``Authorization: Bearer`` registration token (each token it
  issued works once) and the tool's registration document (redirect URIs, login URI, JWKS URL,
  auth method, grant types, scopes, messages), then creates a client id with one deployment and
  answers them as Moodle does. Every request is kept in ``registration_requests``; what it
  refuses is also in ``problems``.

``registration_url(tool_invite_url)`` is the URL the LMS opens: the tool's invitation URL with
``openid_configuration`` and a fresh ``registration_token`` added.
"""

from __future__ import annotations

import json
import secrets
import uuid
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, request

from tests.lms.platform import SimulatedPlatform

TOOL_CONFIG = "https://purl.imsglobal.org/spec/lti-tool-configuration"
PLATFORM_CONFIG = "https://purl.imsglobal.org/spec/lti-platform-configuration"
SUPPORTED_SCOPES = [
    "openid",
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
    "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly",
    "https://purl.imsglobal.org/spec/lti-ags/scope/score",
    "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly",
]


class RegisteringPlatform(SimulatedPlatform):
    """A simulated LMS that registers tools by LTI Dynamic Registration."""

    def __init__(self, tool_url: str, **kwargs: Any) -> None:
        super().__init__(tool_url, **kwargs)
        self.config_override: dict[str, Any] = {}
        self.config_body: bytes | None = None
        self.config_chunked = False
        self.registration_tokens: set[str] = set()
        self.registration_requests: list[dict[str, Any]] = []
        self.registered: list[dict[str, Any]] = []
        self.config_requests = 0
        self.send_deployment_id = True  # False: the answer names no deployment (some LMSs)

    def start(self) -> RegisteringPlatform:
        super().start()
        self.issuer = self.url  # an LMS's issuer is its own site
        return self

    @property
    def openid_configuration_url(self) -> str:
        return self.url + "/.well-known/openid-configuration"

    @property
    def registration_endpoint(self) -> str:
        return self.url + "/register"

    def new_registration_token(self) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self.registration_tokens.add(token)
        return token

    def registration_url(self, invite_url: str, *, token: str | None = None, **extra: str) -> str:
        """What the LMS opens: the tool's URL plus ``openid_configuration`` and a token."""
        params = {
            "openid_configuration": self.openid_configuration_url,
            "registration_token": token or self.new_registration_token(),
            **extra,
        }
        return invite_url + ("&" if "?" in invite_url else "?") + urlencode(params)

    def openid_configuration(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "issuer": self.issuer,
            "authorization_endpoint": self.auth_login_url,
            "token_endpoint": self.auth_token_url,
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
            "jwks_uri": self.key_set_url,
            "registration_endpoint": self.registration_endpoint,
            "scopes_supported": list(SUPPORTED_SCOPES),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public", "pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": ["sub", "iss", "name", "given_name", "family_name", "email"],
            PLATFORM_CONFIG: {
                "product_family_code": self.product_family_code,
                "version": "4.3",
                "messages_supported": [
                    {"type": "LtiResourceLinkRequest"},
                    {"type": "LtiDeepLinkingRequest"},
                ],
                "variables": ["Context.id", "Context.label", "ResourceLink.id"],
            },
        }
        for key, value in self.config_override.items():
            if value is None:
                document.pop(key, None)
            else:
                document[key] = value
        return document

    def _check_registration(self, token: str, body: Any) -> list[str]:
        problems: list[str] = []
        with self._lock:
            if token not in self.registration_tokens:
                problems.append("the registration token is unknown or was used")
            self.registration_tokens.discard(token)
        if not isinstance(body, dict):
            return [*problems, "the registration is not a JSON object"]
        expected = {
            "application_type": "web",
            "response_types": ["id_token"],
            "initiate_login_uri": self.tool_url + "/lti/login",
            "redirect_uris": [self.redirect_uri],
            "jwks_uri": self.tool_url + "/lti/jwks",
            "token_endpoint_auth_method": "private_key_jwt",
        }
        for key, value in expected.items():
            if body.get(key) != value:
                problems.append(f"{key} must be {value!r}, got {body.get(key)!r}")
        if set(body.get("grant_types") or []) != {"implicit", "client_credentials"}:
            problems.append(f"grant_types: {body.get('grant_types')!r}")
        scopes = str(body.get("scope", "")).split()
        if not scopes or any(s not in SUPPORTED_SCOPES for s in scopes):
            problems.append(f"scope: {body.get('scope')!r}")
        if not body.get("client_name"):
            problems.append("client_name is missing")
        tool = body.get(TOOL_CONFIG)
        if not isinstance(tool, dict):
            return [*problems, f"{TOOL_CONFIG} is missing"]
        if tool.get("domain") != self.tool_url.split("://", 1)[1]:
            problems.append(f"domain: {tool.get('domain')!r}")
        if tool.get("target_link_uri") != self.default_target_link_uri:
            problems.append(f"target_link_uri: {tool.get('target_link_uri')!r}")
        custom = tool.get("custom_parameters", {})
        if not isinstance(custom, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in custom.items()
        ):
            problems.append(f"custom_parameters must map strings to strings: {custom!r}")
        types = {m.get("type") for m in tool.get("messages") or [] if isinstance(m, dict)}
        if types != {"LtiResourceLinkRequest", "LtiDeepLinkingRequest"}:
            problems.append(f"messages: {tool.get('messages')!r}")
        return problems

    def _build_app(self) -> Flask:
        app = super()._build_app()

        @app.get("/.well-known/openid-configuration")
        def openid_configuration() -> Response:
            with self._lock:
                self.config_requests += 1
            body = self.config_body
            if body is not None and self.config_chunked:  # no Content-Length: chunks
                chunks = (body[i : i + 8192] for i in range(0, len(body), 8192))
                return Response(chunks, mimetype="application/json")
            if body is not None:
                return Response(body, mimetype="application/json")
            return Response(json.dumps(self.openid_configuration()), mimetype="application/json")

        @app.post("/register")
        def register() -> Response:
            auth = request.headers.get("Authorization", "")
            token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
            body = request.get_json(silent=True)
            with self._lock:
                self.registration_requests.append({"token": token, "body": body})
            problems = self._check_registration(token, body)
            if problems:
                with self._lock:
                    self.problems.extend(problems)
                return Response(
                    json.dumps({"error": "invalid_client_metadata", "problems": problems}),
                    status=400,
                    mimetype="application/json",
                )
            client_id = f"dr-client-{uuid.uuid4().hex[:8]}"
            deployment_id = f"dr-deployment-{uuid.uuid4().hex[:6]}"
            with self._lock:
                self.clients[client_id] = [deployment_id]
                self.client_id = client_id  # launches use the new registration from now on
                self.registered.append({"client_id": client_id, "deployment_id": deployment_id})
            answer = dict(body)
            answer["client_id"] = client_id
            answer[TOOL_CONFIG] = dict(body[TOOL_CONFIG])
            if self.send_deployment_id:
                answer[TOOL_CONFIG]["deployment_id"] = deployment_id
            return Response(json.dumps(answer), mimetype="application/json")

        return app
