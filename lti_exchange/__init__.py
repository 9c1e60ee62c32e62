"""lti-exchange: an LTI 1.3-integrated exchange service for nbgrader.

Importing the package (or any module under ``services``, ``archives``, ``tokens``, ``storage``)
loads no Flask: the web layer is imported by :func:`create_app` when it is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from lti_exchange.config import Settings

__version__ = "0.1.0"


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI app (see ``lti_exchange.web.app``)."""
    from lti_exchange.web.app import create_app as build

    return build(settings)
