"""Calls from the tool to the LMS: OAuth2 client credentials (a JWT assertion signed with our
tool key), AGS line items and scores, and NRPS memberships. Works without any browser session.

Each call asks for the one scope it needs; the worker chooses only scopes the platform offered
in the launch's AGS claim (``services.resource_links.GradeTarget``).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import requests
from pylti1p3.registration import Registration

from lti_exchange.keyring import KeyRing
from lti_exchange.lti.store import DatabaseStore
from lti_exchange.lti.tool_conf import public_pem
from lti_exchange.models import LtiRegistration

AGS = "https://purl.imsglobal.org/spec/lti-ags/scope/"
SCOPE_LINEITEM = AGS + "lineitem"
SCOPE_LINEITEM_READONLY = AGS + "lineitem.readonly"
SCOPE_SCORE = AGS + "score"
SCOPE_NRPS = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
LINEITEM_TYPE = "application/vnd.ims.lis.v2.lineitem+json"
LINEITEMS_TYPE = "application/vnd.ims.lis.v2.lineitemcontainer+json"
SCORE_TYPE = "application/vnd.ims.lis.v1.score+json"
MEMBERSHIPS_TYPE = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
TAG = "nbgrader"  # the ``tag`` of every line item the tool creates
TIMEOUT = (10, 60)
MAX_PAGES = 1000


class PlatformError(Exception):
    """The LMS refused or could not be reached; ``retryable`` says whether to try again."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


def _describe(response: requests.Response) -> str:
    try:
        body = response.json()
        if isinstance(body, dict):
            detail = body.get("error_description") or body.get("message") or body.get("error")
            if detail:
                return f"HTTP {response.status_code}: {detail}"
    except ValueError:
        pass
    return f"HTTP {response.status_code}: {response.text[:300]}"


class PlatformClient:
    """One LMS registration's services, with its access tokens cached until they expire."""

    def __init__(
        self,
        registration: LtiRegistration,
        tool_keys: KeyRing,
        store: DatabaseStore,
        http: requests.Session | None = None,
    ) -> None:
        self.registration = registration
        self.tool_keys = tool_keys
        self.store = store
        self.http = http or requests.Session()

    # -- tokens ---------------------------------------------------------------------------------
    def _assertion(self) -> str:
        key = self.tool_keys.ensure_key()
        kid = Registration.get_jwk(public_pem(key))["kid"]
        now = int(time.time())
        reg = self.registration
        claims = {
            "iss": reg.client_id,
            "sub": reg.client_id,
            "aud": reg.auth_audience or reg.auth_token_url,
            "iat": now - 5,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": kid})

    def access_token(self, scopes: list[str]) -> str:
        scope = " ".join(sorted(scopes))
        cache_key = (
            "lms-token-" + hashlib.sha256(f"{self.registration.id}|{scope}".encode()).hexdigest()
        )
        cached = self.store.get(cache_key)
        if cached:
            return cached
        try:
            response = self.http.post(
                self.registration.auth_token_url,
                data={
                    "grant_type": "client_credentials",
                    "client_assertion_type": (
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                    ),
                    "client_assertion": self._assertion(),
                    "scope": scope,
                },
                timeout=TIMEOUT,
            )
        except requests.RequestException as exc:
            raise PlatformError(f"LMS token endpoint unreachable: {exc}", retryable=True) from exc
        if response.status_code != 200:
            raise PlatformError(
                f"LMS refused the token request ({_describe(response)})",
                status=response.status_code,
                retryable=response.status_code >= 500 or response.status_code == 429,
            )
        body = response.json()
        token = body["access_token"]
        lifetime = int(body.get("expires_in", 3600))
        self.store.set(cache_key, token, max(lifetime - 60, 30))
        return token

    # -- requests -------------------------------------------------------------------------------
    def _call(self, method: str, url: str, scopes: list[str], **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        headers["Authorization"] = f"Bearer {self.access_token(scopes)}"
        try:
            response = self.http.request(method, url, headers=headers, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise PlatformError(f"LMS unreachable: {exc}", retryable=True) from exc
        if response.status_code >= 400:
            raise PlatformError(
                _describe(response),
                status=response.status_code,
                retryable=response.status_code >= 500 or response.status_code == 429,
            )
        return response

    def _pages(
        self, url: str, scopes: list[str], accept: str, params: dict | None
    ) -> Iterator[requests.Response]:
        """Follow ``Link: <...>; rel="next"`` verbatim (its case kept, unlike pylti1p3)."""
        for _page in range(MAX_PAGES):
            response = self._call("GET", url, scopes, headers={"Accept": accept}, params=params)
            yield response
            following = response.links.get("next", {}).get("url")
            if not following:
                return
            url, params = following, None

    # -- AGS ------------------------------------------------------------------------------------
    def find_lineitem(
        self,
        lineitems_url: str,
        *,
        resource_id: str,
        resource_link_id: str | None,
        scope: str = SCOPE_LINEITEM,
    ) -> str | None:
        """The nbgrader line item of ``resource_id``: first among the columns of the resource
        link (``resourceLinkId``): the one with that ``resourceId``, else the link's only
        column when the LMS made it without one (coupled grading); then by ``resourceId`` +
        ``tag``. Never matched by label."""
        if resource_link_id:
            of_link = [
                item
                for item in self._items(
                    lineitems_url, scope, {"resource_link_id": resource_link_id}
                )
                if item.get("resourceLinkId") == resource_link_id
            ]
            for item in of_link:
                if item.get("resourceId") == resource_id:
                    return item["id"]
            if len(of_link) == 1 and not of_link[0].get("resourceId"):
                return of_link[0]["id"]
        for item in self._items(lineitems_url, scope, {"resource_id": resource_id, "tag": TAG}):
            if item.get("resourceId") == resource_id and item.get("tag") == TAG:
                return item["id"]
        return None

    def _items(self, lineitems_url: str, scope: str, params: dict[str, str]) -> Iterator[dict]:
        """The line items (with a string id) the container lists for ``params``, page by page."""
        for page in self._pages(lineitems_url, [scope], LINEITEMS_TYPE, params):
            body = page.json()
            for item in body if isinstance(body, list) else []:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    yield item

    def create_lineitem(
        self,
        lineitems_url: str,
        *,
        resource_id: str,
        label: str,
        score_maximum: float,
        resource_link_id: str | None,
    ) -> str:
        """A new line item with ``resourceId``, ``tag`` and (when given) ``resourceLinkId``."""
        item: dict[str, Any] = {
            "label": label,
            "scoreMaximum": score_maximum,
            "resourceId": resource_id,
            "tag": TAG,
        }
        if resource_link_id:
            item["resourceLinkId"] = resource_link_id
        created = self._call(
            "POST",
            lineitems_url,
            [SCOPE_LINEITEM],
            json=item,
            headers={"Content-Type": LINEITEM_TYPE, "Accept": LINEITEM_TYPE},
        )
        return created.json()["id"]

    def get_lineitem(self, lineitem_url: str, *, scope: str) -> dict[str, Any]:
        """One line item (its ``endDateTime`` is the LMS's due date of the column)."""
        answer = self._call("GET", lineitem_url, [scope], headers={"Accept": LINEITEM_TYPE})
        try:
            body = answer.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise PlatformError(
                f"the LMS answered the line item {lineitem_url} without a JSON object",
                status=answer.status_code,
                retryable=False,
            )
        return body

    def post_score(self, lineitem_url: str, score: dict[str, Any]) -> None:
        base, _, query = lineitem_url.partition("?")
        url = base.rstrip("/") + "/scores" + (f"?{query}" if query else "")
        self._call("POST", url, [SCOPE_SCORE], json=score, headers={"Content-Type": SCORE_TYPE})

    # -- NRPS -----------------------------------------------------------------------------------
    def memberships(self, url: str) -> Iterator[dict[str, Any]]:
        for page in self._pages(url, [SCOPE_NRPS], MEMBERSHIPS_TYPE, None):
            yield from page.json().get("members", [])
