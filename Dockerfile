# The hostauth image: `make dist && docker build -t hostauth .`
#
# The build stage installs the locked dependencies (hashes checked) and the
# wheel `make dist` made into a virtualenv; the final stage is the slim base
# with that virtualenv alone: no compiler, no pip cache, a non-root user.
# tests/process/test_image.py runs this file's ENTRYPOINT with its ENV from
# a `make dist` install (no container engine runs where the tests do).

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.lock /src/requirements.lock
RUN python -m venv /opt/hostauth \
 && /opt/hostauth/bin/pip install --require-hashes -r /src/requirements.lock
COPY dist/ /src/dist/
RUN /opt/hostauth/bin/pip install --no-deps /src/dist/hostauth-*.whl

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --gid 0 --no-create-home --shell /usr/sbin/nologin hostauth
COPY --from=build /opt/hostauth /opt/hostauth
# Every address, as a container listens; plaintext there is refused unless TLS
# is given (HOSTAUTH_TLS_CERT_FILE/KEY_FILE) or HOSTAUTH_ALLOW_PLAINTEXT=true
# (a mesh that encrypts). The keyring comes as a secret file. The metrics'
# shared files live in TMPDIR: a writable /tmp (an emptyDir under a
# read-only root filesystem).
ENV PATH=/opt/hostauth/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOSTAUTH_HTTP_ADDR=:8080 \
    HOSTAUTH_GRPC_ADDR=:9090 \
    HOSTAUTH_METRICS_ADDR=:9464 \
    HOSTAUTH_LOG_FORMAT=json \
    HOSTAUTH_KEYRING_FILE=/run/secrets/hostauth-keyring \
    TMPDIR=/tmp
USER 10001
EXPOSE 8080 9090 9464
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["hostauth", "ready"]
ENTRYPOINT ["hostauth", "serve"]
