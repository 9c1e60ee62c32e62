"""Where a user's notebook server lives: a registration's ``--notebook-url-template``.

The landing page links a launched user to their notebook server (JupyterLab, and the hand-off
page that stores their tokens there). The template is the server's URL, the same for everyone
behind JupyterHub's ``/hub/user-redirect/``, or with ``{username}`` and ``{course_id}`` where
each user or course has their own (``https://hub.example.edu/user/{username}/``). It is checked
when the LMS is registered; filling it in never fails a launch.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

PLACEHOLDERS = ("{username}", "{course_id}")
MAX_TEMPLATE = 1000  # characters: the column's size (models/lti.py)


def check_template(template: str) -> str:
    """The template, ending with ``/``; ``ValueError`` saying what to change otherwise."""
    text = template.strip()
    stored = text if text.endswith("/") else text + "/"
    if len(stored) > MAX_TEMPLATE:
        raise ValueError(
            f"The notebook URL template is {len(stored)} characters long; at most {MAX_TEMPLATE} "
            "fit. Use the notebook server's address only."
        )
    bare = text
    for placeholder in PLACEHOLDERS:
        bare = bare.replace(placeholder, "")
    if "{" in bare or "}" in bare:
        raise ValueError(
            f"The notebook URL template {template!r} has braces other than {{username}} and "
            "{course_id}, the only values it can hold; remove them."
        )
    try:
        parts = urlsplit(text.replace("{username}", "u").replace("{course_id}", "c"))
    except ValueError as exc:
        raise ValueError(f"The notebook URL template {template!r} is not a URL ({exc}).") from exc
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(
            f"The notebook URL template {template!r} must be an http(s) URL of the notebook "
            "server, e.g. https://hub.example.edu/hub/user-redirect/."
        )
    if parts.query or parts.fragment:
        raise ValueError(
            f"The notebook URL template {template!r} must not have a query or fragment: the "
            "pages' paths (lab, lti-exchange/handoff) are added to it."
        )
    return stored


def notebook_url(template: str | None, username: str, course_id: str) -> str:
    """The user's notebook server URL, ending with ``/`` ("" without a template). Never raises:
    a template stored before the check keeps any other braces as they are."""
    if not template:
        return ""
    url = template.replace("{username}", quote(username, safe="@")).replace(
        "{course_id}", quote(course_id, safe="@")
    )
    return url if url.endswith("/") else url + "/"
