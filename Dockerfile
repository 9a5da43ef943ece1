# relman worker (and CLI) image: `docker build -t relman .`, then `docker run relman worker`.
#
# The base image is pinned to an exact Python release (newest 3.11.x in
# github.com/docker-library/python versions.json); relman requires Python >= 3.11.

# --- build: a virtual environment holding relman and its dependencies ----------------------
FROM python:3.11.15-slim-trixie AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/relman
WORKDIR /src

# Dependencies first, read from pyproject.toml, so editing relman's code does not reinstall
# them on every build.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && /opt/relman/bin/pip install -r requirements.txt

COPY common/ common/
COPY models/ models/
COPY workflows/ workflows/
COPY activities/ activities/
COPY worker/ worker/
COPY client/ client/
COPY console/ console/
RUN /opt/relman/bin/pip install --no-deps . \
    && /opt/relman/bin/pip check

# --- runtime: the virtual environment, no sources, no build tools, not root ----------------
FROM python:3.11.15-slim-trixie

ENV PATH=/opt/relman/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN groupadd --system --gid 10001 relman \
    && useradd --system --uid 10001 --gid relman --create-home --home-dir /home/relman \
       --shell /usr/sbin/nologin relman

COPY --from=build /opt/relman /opt/relman
# docker-compose.yml's health check for `relman worker`.
COPY deploy/worker_healthcheck.py /opt/relman/worker_healthcheck.py

USER relman
# A temporal.toml profile may be mounted at /home/relman/.config/temporalio/temporal.toml,
# the default location Temporal's client configuration reads.
WORKDIR /home/relman

ENTRYPOINT ["relman"]
CMD ["worker"]
