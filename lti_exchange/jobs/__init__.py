"""What the worker does besides sending grades, each on its own schedule (``worker.py`` runs them):

- ``periodic``: the small runner — each job at most once per interval, a failure logged and retried
  at the next interval.
- ``purge``: expired key-value rows and spent or expired refresh tokens, in bounded batches.
- ``roster``: roster syncs that instructor launches asked for, one worker per course at a time.
- ``uploads``: partial uploads a killed server process left in the blob storage.
- ``orphans``: blobs no row names (a crash between storing a blob and committing its row).
- ``lineitem_due_dates``: due dates read from the line items launches asked about.
- ``requests``: the pending requests web processes leave for ``roster`` and ``lineitem_due_dates``.
"""
