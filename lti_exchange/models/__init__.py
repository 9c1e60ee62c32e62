"""All models, imported here so Alembic and the services see one metadata."""

from lti_exchange.models.assignment import Assignment, Release
from lti_exchange.models.course import (
    COURSE_ROLES,
    INSTRUCTOR,
    LEARNER,
    STAFF_ROLES,
    TEACHING_ASSISTANT,
    Course,
    Enrolment,
)
from lti_exchange.models.due_date import DueDate, Extension
from lti_exchange.models.event import EVENT_KINDS, Event
from lti_exchange.models.grade import GRADE_STATUSES, Grade, GradeOutbox, LineItem
from lti_exchange.models.lti import KeyValue, LtiDeployment, LtiRegistration, RefreshToken
from lti_exchange.models.org import Organisation
from lti_exchange.models.resource_link import ResourceLink
from lti_exchange.models.submission import Feedback, Submission
from lti_exchange.models.user import User

__all__ = [
    "COURSE_ROLES",
    "EVENT_KINDS",
    "INSTRUCTOR",
    "LEARNER",
    "STAFF_ROLES",
    "TEACHING_ASSISTANT",
    "Assignment",
    "Course",
    "DueDate",
    "Enrolment",
    "Event",
    "Extension",
    "Feedback",
    "GRADE_STATUSES",
    "Grade",
    "GradeOutbox",
    "LineItem",
    "KeyValue",
    "LtiDeployment",
    "LtiRegistration",
    "RefreshToken",
    "Organisation",
    "Release",
    "ResourceLink",
    "Submission",
    "User",
]
