"""LTI 1.3: login, launch, JWKS, tool configuration, deep linking."""

from flask import Blueprint

bp = Blueprint("lti", __name__, url_prefix="/lti", template_folder="../templates")

from lti_exchange.lti import views  # noqa: E402,F401
