# lti-exchange service image.
#
#   docker build -t lti-exchange .
#   docker run -p 8000:8000 -v lti-exchange-data:/data lti-exchange
#
# The default command migrates the configured database, then serves with gunicorn
# (config/gunicorn.conf.py). Run other commands with e.g.
#   docker run --rm -v lti-exchange-data:/data lti-exchange lti-exchange worker
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LTI_EXCHANGE_DATA_DIR=/data

# Unprivileged runtime user (fixed uid/gid so volume ownership is predictable).
RUN groupadd --system --gid 10001 lti \
    && useradd --system --no-log-init --uid 10001 --gid lti \
        --home-dir /app --no-create-home --shell /usr/sbin/nologin lti \
    && mkdir -p /data \
    && chown lti:lti /data

WORKDIR /app

COPY pyproject.toml README.md ./
COPY lti_exchange/ lti_exchange/
COPY nbgrader_plugin/ nbgrader_plugin/
COPY config/ config/
COPY jupyter-config/ jupyter-config/

# Build artefacts of the in-tree build are removed; the installed package lives in site-packages.
RUN pip install --no-cache-dir . \
    && rm -rf build ./*.egg-info

VOLUME ["/data"]

USER 10001:10001

EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=5).status == 200 else 1)"]

CMD ["sh", "-c", "lti-exchange db upgrade && exec gunicorn -c config/gunicorn.conf.py 'lti_exchange:create_app()'"]
