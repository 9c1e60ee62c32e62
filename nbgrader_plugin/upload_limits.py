"""An upload checked against the exchange's limits before a byte of it is sent.

The exchange refuses an upload over its limits (413) from the request's headers, before reading
the body, and closes the connection. The plugin is then still sending: on Linux it reads the
answer after the broken pipe, but elsewhere a reset connection may discard it, and a proxy that
buffers request bodies (nginx's default; the shipped nginx and Kubernetes ingress configurations
turn it off for uploads) reads the whole body before the exchange sees the headers. So a large
upload first asks the exchange for its limits (``GET /api/v1/limits``) and, when it is over one,
is refused here, with the same advice, before anything is sent.
Small uploads are not asked about: one more request each would cost more than it saves.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

# An upload larger than this, or holding more files and folders, asks for the limits first.
PREFLIGHT_BYTES = 16 * 1024 * 1024
PREFLIGHT_MEMBERS = 1000


@dataclass(frozen=True)
class UploadLimits:
    """What one upload may be (the exchange's settings of the same names)."""

    max_upload_bytes: int
    max_unpacked_bytes: int
    max_archive_members: int

    @classmethod
    def from_answer(cls, answer: Any) -> UploadLimits | None:
        """The limits in the exchange's answer, or None when it does not hold three whole
        numbers (then the exchange's own refusal is the check)."""
        if not isinstance(answer, dict):
            return None
        values = [answer.get(field.name) for field in fields(cls)]
        numbers = [value for value in values if type(value) is int and value > 0]
        return cls(*numbers) if len(numbers) == len(values) else None


@dataclass(frozen=True)
class Upload:
    """What is about to be sent: the archive's bytes, its files and folders, and the sum of its
    files' sizes (None where not known); ``feedback``: many students' feedback, not a folder."""

    size: int
    members: int | None = None
    unpacked: int | None = None
    feedback: bool = False

    def worth_checking(self) -> bool:
        """Whether the upload is large enough to ask for the limits before sending it."""
        return self.size > PREFLIGHT_BYTES or (self.members or 0) > PREFLIGHT_MEMBERS


@dataclass(frozen=True)
class Refusal:
    """Why an upload is not sent: the exchange's error code for it, and the user's message."""

    code: str
    message: str


_FOLDER_ADVICE = (
    "Remove large files (data sets, outputs) from the folder",
    "Remove generated files (caches, checkpoints, data sets, virtual environments) from the folder",
)
_FEEDBACK_ADVICE = (
    "Release feedback for fewer students at a time (nbgrader release_feedback --student)",
) * 2


def refusal(upload: Upload, limits: UploadLimits) -> Refusal | None:
    """Why ``upload`` is over ``limits``, or None when it is within them."""
    what = "The feedback" if upload.feedback else "The folder"
    fewer_bytes, fewer_members = _FEEDBACK_ADVICE if upload.feedback else _FOLDER_ADVICE
    checks = (
        (
            upload.size,
            limits.max_upload_bytes,
            "payload_too_large",
            "MAX_UPLOAD_BYTES",
            f"{what} makes an upload of {_amount(upload.size)}",
            _amount(limits.max_upload_bytes),
            fewer_bytes,
        ),
        (
            upload.members,
            limits.max_archive_members,
            "archive_too_many_members",
            "MAX_ARCHIVE_MEMBERS",
            f"{what} holds {upload.members} files and folders",
            f"{limits.max_archive_members}",
            fewer_members,
        ),
        (
            upload.unpacked,
            limits.max_unpacked_bytes,
            "archive_too_large",
            "MAX_UNPACKED_BYTES",
            f"{what}'s files add up to {_amount(upload.unpacked or 0)}",
            _amount(limits.max_unpacked_bytes),
            fewer_bytes,
        ),
    )
    for value, limit, code, setting, held, most, advice in checks:
        if value is not None and value > limit:
            return Refusal(
                code,
                f"{held}; the exchange takes at most {most} in one upload. {advice}, or ask "
                f"the exchange's operator to raise LTI_EXCHANGE_{setting}. Nothing was sent.",
            )
    return None


def _amount(size: int) -> str:
    """``size`` bytes for a person: "2.1 GB (2147483648 bytes)"; under a megabyte, bytes only."""
    if size >= 1e9:
        return f"{size / 1e9:.1f} GB ({size} bytes)"
    if size >= 1e6:
        return f"{size / 1e6:.1f} MB ({size} bytes)"
    return f"{size} bytes"
