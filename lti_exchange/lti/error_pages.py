"""What an LTI error page tells a person: what happened, in plain words, and who can fix it.

Every refusal of the ``/lti`` pages has a stable ``code``; this module maps it (and, for a launch
the LTI library refused, the kind of check that failed) to a short explanation and an audience:
the person at the screen (launch again), the instructor (bind the link, change the LMS link), the
LMS administrator (register the platform, enable a service) or the exchange's operator. The
library's own words never reach the page; they are in the service's log under the request id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lti_exchange.errors import ApiError

LAUNCH_REASON = "launch_reason"  # attribute of a refused launch's error: the library's text

YOU = "you"
INSTRUCTOR = "instructor"
LMS_ADMIN = "lms_admin"
OPERATOR = "operator"

WHO = {
    YOU: "You can fix this",
    INSTRUCTOR: "Your instructor can fix this",
    LMS_ADMIN: "Your LMS administrator can fix this",
    OPERATOR: "The exchange's operator can fix this",
}

LAUNCH_AGAIN = (
    "Go back to your course in the LMS and open the assignment again from there. If the same "
    "page comes back, send this page's details to your instructor."
)
ASK_ADMIN = (
    "Tell your instructor, who passes it on to the LMS administrator with the details below. "
    "Opening the assignment again will not help until then."
)


@dataclass(frozen=True)
class Advice:
    """The page's heading, what happened, who can fix it and how; ``detail``: our own words for
    whoever fixes it (None: show the error's message)."""

    title: str
    what: str
    who: str
    todo: str
    detail: str | None = None

    @property
    def who_label(self) -> str:
        return WHO[self.who]


# The kinds of launch check the LTI library refuses, by words its messages contain (lower case),
# first match wins: (words, what happened, who, what to do, detail for whoever fixes it).
_LAUNCH_CHECKS: list[tuple[tuple[str, ...], str, str, str, str]] = [
    (
        ("expired",),
        "The sign-in your LMS sent took too long to arrive, and it is only valid for a few "
        "minutes.",
        YOU,
        LAUNCH_AGAIN,
        "The id_token has expired (its exp claim is in the past). If this happens to everyone, "
        "check the clocks of the LMS and the exchange.",
    ),
    (
        ("nonce", "replay"),
        "This launch was already used. That happens when a launch page is reloaded or opened "
        "with the browser's Back button.",
        YOU,
        LAUNCH_AGAIN,
        "The id_token's nonce was already used: a replayed launch is refused.",
    ),
    (
        ("state",),
        "The launch did not come back to the browser window that started it, or it took too long.",
        YOU,
        LAUNCH_AGAIN,
        "The launch's state is unknown or expired (a launch is tied to the browser that "
        "started it).",
    ),
    (
        ("deployment",),
        "Your LMS sent a deployment of this tool that the exchange does not know.",
        LMS_ADMIN,
        ASK_ADMIN,
        "Unknown deployment id: the exchange's administrator adds it with `lti-exchange "
        "platform add --deployment-id …` for this issuer and client id.",
    ),
    (
        ("version",),
        "Your LMS sent a kind of launch this tool does not understand (it needs LTI 1.3).",
        LMS_ADMIN,
        ASK_ADMIN,
        "The launch's LTI version claim is missing or is not 1.3.0.",
    ),
    (
        ("kid", "key", "signature", "alg", "jwks"),
        "The exchange could not confirm that the launch really came from your LMS.",
        LMS_ADMIN,
        ASK_ADMIN,
        "The id_token's signature could not be verified with the keys registered for this "
        "LMS (key set URL, kid, RS256).",
    ),
    (
        ("iat", "issued", "future"),
        "The launch's time stamps do not make sense to the exchange.",
        LMS_ADMIN,
        ASK_ADMIN,
        "The id_token's issued-at time is in the future or too old: check the clocks of the LMS "
        "and the exchange.",
    ),
    (
        ("aud", "azp", "client", "client_id", "iss", "registration", "issuer", "audience"),
        "Your LMS is not registered with this exchange, or sent a launch meant for another tool.",
        LMS_ADMIN,
        ASK_ADMIN,
        "The id_token's issuer, audience or client id does not match a registration of this "
        "exchange: register the platform with `lti-exchange platform add`.",
    ),
    (
        ("role", "roles"),
        "Your LMS did not say what your role in the course is.",
        LMS_ADMIN,
        ASK_ADMIN,
        "The launch carries no roles claim.",
    ),
    (
        ("message_type", "message type", "resource_link", "resource link"),
        "Your LMS sent a kind of launch this tool does not offer.",
        LMS_ADMIN,
        ASK_ADMIN,
        "The launch's message type or resource link claim is missing or unsupported.",
    ),
    (
        ("sub", "user"),
        "Your LMS did not say who you are (an anonymous launch).",
        LMS_ADMIN,
        ASK_ADMIN,
        "The launch carries no sub claim: the tool's privacy settings in the LMS must send "
        "the user's id.",
    ),
]


def _launch_advice(reason: str) -> Advice:
    lowered = reason.lower()
    for words, what, who, todo, detail in _LAUNCH_CHECKS:
        if re.search(r"\b(" + "|".join(re.escape(word) for word in words) + r")\b", lowered):
            return Advice("The assignment could not be opened", what, who, todo, detail)
    return Advice(
        "The assignment could not be opened",
        "The sign-in message from your LMS did not pass the exchange's checks.",
        YOU,
        LAUNCH_AGAIN,
        "The id_token failed a check; the exchange's log has the reason under the request id "
        "below.",
    )


_BY_CODE: dict[str, Advice] = {
    "launch_needs_lms": Advice(
        "Open the assignment from your LMS",
        "This address only works when your LMS opens it; it cannot be reloaded or bookmarked.",
        YOU,
        "Go back to your course in the LMS and open the assignment from there.",
        "GET /lti/launch: a launch is a form the LMS posts.",
    ),
    "lti_target_mismatch": Advice(
        "The assignment could not be opened",
        "The launch changed on its way from your LMS.",
        YOU,
        LAUNCH_AGAIN,
    ),
    "lti_bind_invalid": Advice(
        "The assignment could not be opened",
        "The exchange could not confirm this launch: it took too long, or was already opened.",
        YOU,
        LAUNCH_AGAIN,
    ),
    "lti_bind_cross_site": Advice(
        "The assignment could not be opened",
        "Another web site tried to complete your launch, so the exchange refused it.",
        YOU,
        LAUNCH_AGAIN,
    ),
    "invalid_target_link_uri": Advice(
        "The tool is set up wrongly in the LMS",
        "Your LMS sent the launch to an address that is not this exchange's.",
        LMS_ADMIN,
        ASK_ADMIN,
    ),
    "invalid_login": Advice(
        "The assignment could not be opened",
        "Your LMS started the sign-in without saying who you are.",
        YOU,
        LAUNCH_AGAIN,
    ),
    "unknown_platform": Advice(
        "This LMS is not registered with the exchange",
        "The exchange does not know the LMS that sent this launch.",
        LMS_ADMIN,
        "Tell your instructor: the exchange's administrator must register this LMS "
        "(`lti-exchange platform add`, or dynamic registration with `lti-exchange platform "
        "invite`). Opening the assignment again will not help until then.",
    ),
    "lti_launch_unusable": Advice(
        "The assignment could not be opened",
        "The launch from your LMS lacks something the exchange needs.",
        INSTRUCTOR,
        "Tell your instructor what the details below say; they can change the course or the "
        "link in the LMS, or ask the LMS administrator.",
    ),
    "role_forbidden": Advice(
        "Only instructors can do this",
        "This part of the tool is for the course's instructors and teaching assistants.",
        INSTRUCTOR,
        "If you are a student, open the assignment your instructor added to the course instead. "
        "If you teach this course, ask the LMS administrator to give you the instructor role.",
    ),
    "deep_link_expired": Advice(
        "This choice has expired",
        "The page for adding an assignment is valid for 30 minutes and only once.",
        YOU,
        "Start adding the assignment again from the LMS.",
    ),
    "bind_expired": Advice(
        "This form has expired",
        "The form for choosing the link's assignment is valid for 30 minutes and only once.",
        YOU,
        "Open the link from the LMS again and choose the assignment there.",
    ),
    "bind_token_missing": Advice(
        "The choice did not arrive",
        "The form was sent without its one-time key.",
        YOU,
        "Open the link from the LMS again and choose the assignment on the page it opens.",
    ),
    "invalid_max_score": Advice(
        "The maximum score is not a number the exchange can use",
        "The gradebook column needs a maximum score greater than 0, or none at all.",
        YOU,
        "Go back, correct the maximum score (or leave it empty), and send the form again.",
    ),
    "invalid_identifier": Advice(
        "That assignment id cannot be used",
        "nbgrader assignment ids use letters, digits and _ . @ - only.",
        YOU,
        "Go back, choose an assignment or correct the id, and send the form again.",
    ),
    "link_not_found": Advice(
        "This LMS link is no longer known",
        "The exchange no longer has a record of the LMS link you were choosing for.",
        YOU,
        LAUNCH_AGAIN,
    ),
    "link_bound_by_lms": Advice(
        "The LMS decides this link's assignment",
        "This link names its assignment in the LMS (a custom parameter), so it cannot be "
        "changed here.",
        YOU,  # only an instructor binds links, and sees this page
        "Change the link's nbgrader_assignment_id custom parameter in the LMS instead.",
    ),
    "base_url_unset": Advice(
        "The exchange is not set up yet",
        "The exchange does not know its own public address, so it cannot answer your LMS.",
        OPERATOR,
        "Tell your instructor; the exchange's operator must set LTI_EXCHANGE_BASE_URL.",
    ),
}


def advice_for(error: ApiError) -> Advice:
    """The page's words for ``error`` (by its code; a generic page for any other)."""
    if error.code == "lti_launch_invalid":
        # The library's reason (``LAUNCH_REASON``, set where the launch is refused) picks the
        # kind of check; its words stay in the log.
        return _launch_advice(str(getattr(error, LAUNCH_REASON, "")))
    found = _BY_CODE.get(error.code)
    if found is not None:
        return found
    if error.status >= 500:
        return Advice(
            "The exchange could not finish this",
            "Something went wrong on the exchange's side.",
            OPERATOR,
            "Try again in a few minutes. If it keeps happening, tell your instructor, who can "
            "pass the details below to the exchange's operator.",
        )
    return Advice(
        "The assignment could not be opened",
        "The exchange could not complete this step.",
        YOU,
        LAUNCH_AGAIN,
    )
