"""nbgrader exchange plugin classes that talk to an lti-exchange service.

Configure with ``c.ExchangeFactory.<slot> = 'nbgrader_plugin.<Class>'`` (see the README).
"""

from nbgrader_plugin.collect import ExchangeCollect
from nbgrader_plugin.exchange import Exchange
from nbgrader_plugin.fetch_assignment import ExchangeFetchAssignment
from nbgrader_plugin.fetch_feedback import ExchangeFetchFeedback
from nbgrader_plugin.grade_exporter import LtiGradeExporter
from nbgrader_plugin.list import ExchangeList
from nbgrader_plugin.release_assignment import ExchangeReleaseAssignment
from nbgrader_plugin.release_feedback import ExchangeReleaseFeedback
from nbgrader_plugin.submit import ExchangeSubmit

__all__ = [
    "Exchange",
    "ExchangeCollect",
    "ExchangeFetchAssignment",
    "ExchangeFetchFeedback",
    "ExchangeList",
    "ExchangeReleaseAssignment",
    "ExchangeReleaseFeedback",
    "ExchangeSubmit",
    "LtiGradeExporter",
]
