"""Running the service process: gunicorn (for ``serve`` and ``config/gunicorn.conf.py``), the
head-buffering worker class, and the access log."""
