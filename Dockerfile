# crm-risk-connector: one `crm-risk run` worker per container. Several containers on one
# PostgreSQL store share the connections (README "Running many connections").
#
#   docker build -t crm-risk-connector .
#   docker run --rm -v $PWD/deploy:/etc/crm-risk:ro -e PGPASSWORD=... crm-risk-connector
# (secrets: crm-risk.secrets.toml beside the config, or the file named by CRMRISK_SECRETS_FILE)
#
# The health check asks the worker's /healthz ([metrics] port = 9108 in the config).

# -- build: wheels for the package and its dependencies, with the PostgreSQL driver ----------
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY connector ./connector
COPY adapters ./adapters
COPY sandboxes ./sandboxes
COPY mappings ./mappings
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[postgres]"

# -- run: the wheels only, as an unprivileged user ---------------------------------------------
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /tmp/wheels
# Exactly the wheels the build stage resolved (the package, its dependencies and psycopg).
RUN pip install --no-cache-dir --no-index /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/crm-risk --create-home \
       --shell /usr/sbin/nologin crm-risk
USER 10001:10001
WORKDIR /var/lib/crm-risk
EXPOSE 9108
# slim has no curl: Python asks /healthz; a 503 (a connection unhealthy, store unreachable) or
# no answer fails the check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4).status != 200)"]
# One process: crm-risk itself is PID 1 and stops cleanly on SIGTERM (runs finish their batch).
STOPSIGNAL SIGTERM
ENTRYPOINT ["crm-risk"]
CMD ["run", "--config", "/etc/crm-risk/crm-risk.toml"]
