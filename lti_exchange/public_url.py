"""The service's public URL when ``LTI_EXCHANGE_BASE_URL`` is not set: from the bind address.

URLs we send to an LMS (redirect_uri, deep-link return, the JWKS URL in ``/lti/config``) must
never come from the request's ``Host`` header, which any client can forge.
"""

from __future__ import annotations

WILDCARD_HOSTS = {"", "0.0.0.0", "::", "*", "[::]"}
DEFAULT_PORT = "8000"  # gunicorn's


def url_from_bind(bind: str) -> str:
    """``http://host:port`` for a concrete TCP bind address; "" for a wildcard or socket bind.

    >>> url_from_bind("127.0.0.1:8000"), url_from_bind("[::1]:80"), url_from_bind("0.0.0.0:80")
    ('http://127.0.0.1:8000', 'http://[::1]', '')
    """
    address = bind.split(",")[0].strip()
    if not address or address.startswith(("unix:", "fd://", "/")):
        return ""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest.lstrip(":") or DEFAULT_PORT
        return "" if host in ("", "::") else _url(f"[{host}]", port)
    host, _, port = address.rpartition(":")
    if not host:
        host, port = address, DEFAULT_PORT
    if host in WILDCARD_HOSTS or not port.isdigit():
        return ""
    return _url(host, port)


def _url(host: str, port: str) -> str:
    return f"http://{host}" if port == "80" else f"http://{host}:{port}"
