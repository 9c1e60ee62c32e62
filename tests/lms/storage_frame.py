"""The simulated LMS as a real browser sees it: a course page that frames the tool, and the
platform's postMessage storage frame (1EdTech "LTI Client Side postMessages" / "postMessage
Storage").

``FramingPlatform`` is a ``SimulatedPlatform`` served at ``http://localhost:<port>``: another
*site* than the tool (``127.0.0.1``), so the tool's frame in its course page is third-party and a
browser that blocks third-party cookies drops the tool's cookies there.

- ``/course/<key>``: the course page. With storage it holds a hidden ``lti_storage_frame`` (the
  platform's storage frame) and starts the tool's login in an iframe with
  ``lti_storage_target=lti_storage_frame`` once that frame is ready; without storage it starts
  the login without the parameter.
- ``/storage_frame``: answers ``lti.capabilities``, ``lti.put_data`` and ``lti.get_data`` for
  the sender's origin (values kept per origin, in the frame's memory), to the sender only.
- ``/replay/<key>``: a course page (with its own storage frame) whose tool frame posts the
  ``id_token`` + ``state`` another browser obtained (``prepare(hold=True)``): login CSRF.
- ``hold=True`` launches: the platform's ``/auth`` page waits for a click instead of posting the
  ``id_token`` (so the pair can be taken to another browser unused).
- ``new_window=True`` launches: the course page keeps its storage frame and opens the tool's
  login in a new window (the tool then reaches the storage frame through ``window.opener``).
"""

from __future__ import annotations

import html
import json
import uuid
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response

from tests.lms.platform import (
    LEARNER,
    LaunchRecord,
    LmsContext,
    LmsUser,
    SimulatedPlatform,
    _Pending,
)

STORAGE_FRAME = "lti_storage_frame"

STORAGE_SCRIPT = """
var kept = {};  // origin + " " + key -> value, for this page's lifetime
var log = [];
window.addEventListener("message", function (event) {
  var m = event.data;
  if (!m || typeof m !== "object" || typeof m.subject !== "string") { return; }
  log.push({origin: event.origin, subject: m.subject, key: m.key});
  var reply = {subject: m.subject + ".response", message_id: m.message_id};
  var slot = event.origin + " " + m.key;
  if (m.subject === "lti.capabilities") {
    reply.supported_messages = [{subject: "lti.put_data"}, {subject: "lti.get_data"}];
  } else if (m.subject === "lti.put_data") {
    kept[slot] = m.value; reply.key = m.key; reply.value = m.value;
  } else if (m.subject === "lti.get_data") {
    if (Object.prototype.hasOwnProperty.call(kept, slot)) {
      reply.key = m.key; reply.value = kept[slot];
    } else {
      reply.error = {code: "bad_request", message: "no value for " + m.key};
    }
  } else {
    reply.error = {code: "unsupported_subject", message: m.subject};
  }
  event.source.postMessage(reply, event.origin);
});
"""


def _page(title: str, body: str) -> Response:
    return Response(
        f"<!doctype html><html><head><title>{html.escape(title)}</title></head>"
        f"<body>{body}</body></html>",
        mimetype="text/html",
    )


class FramingPlatform(SimulatedPlatform):
    """A simulated LMS with browser pages: course page, storage frame, held auth answers."""

    def __init__(self, tool_url: str, **kwargs: Any) -> None:
        super().__init__(tool_url, **kwargs)
        self.pages: dict[str, dict[str, Any]] = {}
        self._held: set[str] = set()
        self._add_browser_routes(self.app)

    def start(self) -> FramingPlatform:
        super().start()
        self.url = self.url.replace("http://127.0.0.1:", "http://localhost:")
        return self

    # -- preparing a launch ------------------------------------------------------------------
    def prepare(
        self,
        *,
        storage: bool,
        user: LmsUser | None = None,
        roles: tuple[str, ...] = (LEARNER,),
        context: LmsContext | None = None,
        hold: bool = False,
        new_window: bool = False,
        custom: dict[str, str] | None = None,
        message_type: str = "LtiResourceLinkRequest",
        deep_linking: dict[str, Any] | None = None,
        resource_link: dict[str, Any] | None = None,
    ) -> tuple[str, LaunchRecord]:
        """A launch the browser starts at the returned course page URL; its record fills in as
        the platform answers (``record.id_token``, ``record.state``)."""
        login_hint = f"user-{uuid.uuid4().hex}"
        message_hint = f"msg-{uuid.uuid4().hex}"
        params = {
            "iss": self.issuer,
            "login_hint": login_hint,
            "target_link_uri": self.default_target_link_uri,
            "lti_message_hint": message_hint,
            "client_id": self.client_id,
            "lti_deployment_id": self.clients[self.client_id][0],
        }
        if storage:
            params["lti_storage_target"] = STORAGE_FRAME
        record = LaunchRecord(login_params=params, accept_json=False)
        pending = _Pending(
            client_id=self.client_id,
            deployment_id=params["lti_deployment_id"],
            user=user or LmsUser.make(),
            roles=list(roles),
            context=context or LmsContext.make(),
            custom=custom,
            message_type=message_type,
            resource_link=resource_link,
            deep_linking=deep_linking,
            target_link_uri=params["target_link_uri"],
            lti_message_hint=message_hint,
            mutate=None,
            header=None,
            record=record,
        )
        key = uuid.uuid4().hex
        with self._lock:
            self._pending[login_hint] = pending
            if hold:
                self._held.add(login_hint)
            self.pages[key] = {
                "storage": storage,
                "new_window": new_window,
                "src": self.tool_url + "/lti/login?" + urlencode(params),
                "record": record,
            }
        return f"{self.url}/course/{key}", record

    def replay_page(self, record: LaunchRecord) -> str:
        """A course page (with storage) whose tool frame posts ``record``'s id_token + state."""
        assert record.id_token and record.state, "the launch has not reached the platform yet"
        key = uuid.uuid4().hex
        with self._lock:
            self.pages[key] = {"storage": True, "src": f"{self.url}/replay-form/{key}"}
            self.pages[key]["record"] = record
        return f"{self.url}/course/{key}"

    # -- what the browser loads --------------------------------------------------------------
    def auto_submit_form(self, action: str, id_token: str, state: str) -> str:  # type: ignore[override]
        page = SimulatedPlatform.auto_submit_form(action, id_token, state)
        with self._lock:
            held = any(
                p.record.id_token == id_token for h, p in self._pending.items() if h in self._held
            )
        if held:  # wait for a click: the pair stays unused
            page = (
                page.replace(' onload="document.forms[0].submit()"', "")
                .replace("<noscript>", "")
                .replace("</noscript>", "")
            )
        return page

    def _add_browser_routes(self, app: Flask) -> None:
        @app.get("/course/<key>")
        def course(key: str) -> Response:
            page = self.pages.get(key)
            if page is None:
                return Response("no such course page", status=404)
            src = json.dumps(page["src"])
            if page.get("new_window"):  # the LMS opens the tool in a window of its own
                frames = (
                    f'<iframe name="{STORAGE_FRAME}" id="storage" src="/storage_frame" '
                    'style="display:none"></iframe>'
                    '<button id="open" type="button">Open the tool in a new window</button>'
                    "<script>document.getElementById('open').addEventListener('click', "
                    f"function () {{ window.open({src}, 'tool'); }});</script>"
                )
            elif page["storage"]:
                frames = (
                    f'<iframe name="{STORAGE_FRAME}" id="storage" src="/storage_frame" '
                    'style="display:none"></iframe>'
                    '<iframe id="tool" name="tool" width="900" height="700"></iframe>'
                    "<script>document.getElementById('storage').addEventListener('load', "
                    f"function () {{ document.getElementById('tool').src = {src}; }});</script>"
                )
            else:
                frames = (
                    f'<iframe id="tool" name="tool" width="900" height="700" '
                    f'src="{html.escape(page["src"])}"></iframe>'
                )
            return _page("Course — Simulated LMS", "<h1>Course</h1>" + frames)

        @app.get("/storage_frame")
        def storage_frame() -> Response:
            return _page("storage", f"<script>{STORAGE_SCRIPT}</script>")

        @app.get("/replay-form/<key>")
        def replay_form(key: str) -> Response:
            record: LaunchRecord = self.pages[key]["record"]
            assert record.id_token and record.state
            return Response(
                SimulatedPlatform.auto_submit_form(
                    self.redirect_uri, record.id_token, record.state
                ),
                mimetype="text/html",
            )
