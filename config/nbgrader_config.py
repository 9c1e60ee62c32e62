# nbgrader configuration for lti-exchange.
#
# Put these lines where every nbgrader process reads them: /etc/jupyter/nbgrader_config.py
# (or {sys.prefix}/etc/jupyter/nbgrader_config.py in the single-user image), so that the
# `nbgrader` command line, formgrader and the Assignments UI all use the exchange.
c = get_config()  # noqa: F821

c.ExchangeFactory.exchange = "nbgrader_plugin.Exchange"
c.ExchangeFactory.fetch_assignment = "nbgrader_plugin.ExchangeFetchAssignment"
c.ExchangeFactory.fetch_feedback = "nbgrader_plugin.ExchangeFetchFeedback"
c.ExchangeFactory.release_assignment = "nbgrader_plugin.ExchangeReleaseAssignment"
c.ExchangeFactory.release_feedback = "nbgrader_plugin.ExchangeReleaseFeedback"
c.ExchangeFactory.list = "nbgrader_plugin.ExchangeList"
c.ExchangeFactory.submit = "nbgrader_plugin.ExchangeSubmit"
c.ExchangeFactory.collect = "nbgrader_plugin.ExchangeCollect"

# The exchange service. `lti-exchange login` and the LMS hand-off store the URL with each token,
# and that stored URL is used; set this (or LTI_EXCHANGE_URL) for tokens stored without one
# (LTI_EXCHANGE_TOKEN) and so the hand-off page knows whose tokens to accept.
# c.Exchange.service_url = "https://exchange.example.edu"

# Optional:
# c.Exchange.path_includes_course = True     # ./course101/ps1 instead of ./ps1
# c.Exchange.token_file = "~/.lti-exchange/tokens.json"
# c.Exchange.timeout = 300                    # seconds to wait for the service
# c.Exchange.progress_threshold = 16777216    # progress bar for transfers >= 16 MiB
# c.Exchange.download_retry_delays = [1, 2, 4]  # waits before asking again for a download
#                                               # that broke off half-way; [] = give up at once

# Grades to the LMS: `nbgrader export --exporter=nbgrader_plugin.LtiGradeExporter`
# c.LtiGradeExporter.import_roster = True      # add the LMS roster's students to the gradebook
# c.LtiGradeExporter.include_ungraded = False  # wait for manual grading before sending a score
