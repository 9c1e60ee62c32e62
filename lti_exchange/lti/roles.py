"""LTI role URIs parsed into the roles the exchange knows (never substring-matched).

Highest recognised role wins: Administrator, then TeachingAssistant (checked before Instructor,
because Canvas sends the TA sub-role together with Instructor), then Instructor, then Learner.
Unknown, empty or missing roles are Learner (least privilege).
"""

from __future__ import annotations

from dataclasses import dataclass

ADMINISTRATOR = "Administrator"
INSTRUCTOR = "Instructor"
TEACHING_ASSISTANT = "TeachingAssistant"
LEARNER = "Learner"

LIS = "http://purl.imsglobal.org/vocab/lis/v2/"
LTI_SYSTEM = "http://purl.imsglobal.org/vocab/lti/system/person#"


@dataclass(frozen=True)
class ParsedRole:
    scope: str  # "context", "system", "institution", "lti-system" or "unknown"
    principal: str
    sub_role: str | None = None


def parse_role(uri: str) -> ParsedRole:
    """Split one role value into (scope, principal, sub-role)."""
    value = uri.strip()
    lowered = value.lower()
    if lowered.startswith(LTI_SYSTEM.lower()):
        return ParsedRole("lti-system", value[len(LTI_SYSTEM) :])
    if lowered.startswith(LIS.lower()):
        rest = value[len(LIS) :]
        path, _, name = rest.partition("#")
        parts = path.split("/")
        if parts[0].lower() == "membership":
            if len(parts) == 2:  # membership/Instructor#TeachingAssistant
                return ParsedRole("context", parts[1], name or None)
            return ParsedRole("context", name)
        if parts == ["system", "person"]:
            return ParsedRole("system", name)
        if parts == ["institution", "person"]:
            return ParsedRole("institution", name)
        return ParsedRole("unknown", value)
    if value and "/" not in value and ":" not in value and "#" not in value:
        return ParsedRole("context", value)  # deprecated short form, e.g. "Learner"
    return ParsedRole("unknown", value)


@dataclass(frozen=True)
class LaunchRoles:
    role: str  # Administrator, TeachingAssistant, Instructor or Learner
    test_user: bool

    @property
    def course_role(self) -> str:
        """The enrolment role: administrators act as instructors in the course."""
        return INSTRUCTOR if self.role == ADMINISTRATOR else self.role


def map_roles(values: object) -> LaunchRoles:
    """Map the ``roles`` claim to the exchange's role."""
    items = values if isinstance(values, list) else []
    roles = [parse_role(v) for v in items if isinstance(v, str)]
    test_user = any(r.scope == "lti-system" and r.principal.lower() == "testuser" for r in roles)

    def has(scope: str, principal: str, sub: str | None = None) -> bool:
        return any(
            r.scope == scope
            and r.principal.lower() == principal.lower()
            and (sub is None or (r.sub_role or "").lower().startswith(sub.lower()))
            for r in roles
        )

    if (
        has("system", "Administrator")
        or has("system", "SysAdmin")
        or has("institution", "Administrator")
        or has("context", "Administrator")
    ):
        role = ADMINISTRATOR
    elif has("context", "Instructor", "TeachingAssistant"):
        role = TEACHING_ASSISTANT
    elif has("context", "Instructor") or has("context", "ContentDeveloper"):
        role = INSTRUCTOR
    else:
        role = LEARNER
    return LaunchRoles(role=role, test_user=test_user)
