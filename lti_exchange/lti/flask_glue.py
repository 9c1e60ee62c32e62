"""The pylti1p3 objects for one request, wired to our database store and settings."""

from __future__ import annotations

from flask import request
from pylti1p3.contrib.flask import (
    FlaskCacheDataStorage,
    FlaskCookieService,
    FlaskOIDCLogin,
    FlaskRequest,
)
from pylti1p3.exception import LtiException

from lti_exchange.lti.message_launch import HardenedMessageLaunch
from lti_exchange.lti.store import DatabaseStore
from lti_exchange.lti.tool_conf import DatabaseToolConf
from lti_exchange.web.current import app_objects

LAUNCH_DATA_LIFETIME = 4 * 3600


class SharedDataStorage(FlaskCacheDataStorage):
    """pylti1p3 cache storage in our database, without the ``session-id`` cookie binding: our
    launch binds state to its nonce server-side, so it works where iframes lose cookies."""

    def get_session_cookie_name(self):
        return None


class PartitionedCookieService(FlaskCookieService):
    """State cookies with ``SameSite=None; Secure; Partitioned`` under HTTPS (LMS iframes)."""

    def update_response(self, response):
        for key, data in self._cookie_data_to_set.items():
            secure = self._request.is_secure()
            response.set_cookie(
                key=key,
                value=data["value"],
                max_age=data["exp"],
                secure=secure,
                path="/",
                httponly=True,
                samesite="None" if secure else "Lax",
                partitioned=secure,
            )


class OIDCLogin(FlaskOIDCLogin):
    """Records the nonce with the state, so the launch can check them together."""

    def _generate_nonce(self) -> str:
        nonce = super()._generate_nonce()
        self._state_params = {**self._state_params, "nonce": nonce}
        return nonce

    def set_cookies(self, response):
        """Put the login's state cookie on ``response`` (a page instead of the redirect)."""
        self._cookie_service.update_response(response)
        return response


def store() -> DatabaseStore:
    return DatabaseStore(app_objects().session_factory)


def lti_request() -> FlaskRequest:
    secure = app_objects().settings.secure_cookies
    return FlaskRequest(request_is_secure=request.is_secure if secure is None else secure)


def tool_conf() -> DatabaseToolConf:
    return DatabaseToolConf(app_objects().session_factory, app_objects().tool_keys)


def data_storage() -> SharedDataStorage:
    return SharedDataStorage(store())


def oidc_login(conf: DatabaseToolConf) -> OIDCLogin:
    req = lti_request()
    return OIDCLogin(
        req, conf, cookie_service=PartitionedCookieService(req), launch_data_storage=data_storage()
    )


def message_launch(conf: DatabaseToolConf) -> HardenedMessageLaunch:
    settings = app_objects().settings
    req = lti_request()
    launch = HardenedMessageLaunch(
        req,
        conf,
        cookie_service=PartitionedCookieService(req),
        launch_data_storage=data_storage(),
    )
    launch.set_launch_data_lifetime(LAUNCH_DATA_LIFETIME)
    trusted = {a.strip() for a in settings.lti_trusted_audiences.split(",") if a.strip()}
    return launch.configure(store(), settings.lti_clock_leeway, settings.lti_iat_max_age, trusted)


def restored_launch(conf: DatabaseToolConf, launch_id: str) -> HardenedMessageLaunch:
    """A launch validated earlier (its data cached under ``launch_id``), configured as a fresh
    one: pylti1p3's ``from_cache`` with our audience rules. Raises ``LtiException`` when gone."""
    launch = message_launch(conf)
    data = launch.get_session_service().get_launch_data(launch_id)
    if not data:
        raise LtiException("Launch data not found")
    launch.set_launch_id(launch_id).set_auto_validation(enable=False).set_jwt({"body": data})
    launch.set_restored().validate_registration()
    return launch
