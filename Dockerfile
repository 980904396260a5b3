# syntax=docker/dockerfile:1
# clearml-scaler in a container (docs/deploying.md). Build from the repository root:
#
#   docker build -t clearml-scaler:0.1.0 .                                   # core + aws + gcp
#   docker build --build-arg PLUGINS=aws -t clearml-scaler-aws:0.1.0 .      # only the plugins named
#
# Run it with the configuration mounted and the credentials in the environment (nothing secret
# is baked into the image):
#
#   docker run --rm --env-file scaler.env -p 9108:9108 \
#     -v "$PWD/scaler.conf:/etc/clearml-scaler/scaler.conf:ro" clearml-scaler:0.1.0
#
# The entry point is `scaler run`; the arguments default to the AWS provider (CMD below), e.g.
# `docker run ... clearml-scaler:0.1.0 --provider gcp --config /etc/clearml-scaler/scaler.conf`.

ARG PYTHON_VERSION=3.11

# -- build: wheels of core and of the chosen plugins ------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY scaler/ scaler/
COPY plugins/ plugins/
# space-separated folder names under plugins/
ARG PLUGINS="aws gcp"
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && for plugin in ${PLUGINS}; do \
         pip wheel --no-cache-dir --no-deps --wheel-dir /wheels "plugins/${plugin}" || exit 1; \
       done

# -- run ----------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim
LABEL org.opencontainers.image.title="clearml-scaler" \
      org.opencontainers.image.description="Cloud machines sized to the ClearML queues" \
      org.opencontainers.image.licenses="Apache-2.0"
# the versions CI tested (constraints.txt) for every dependency of the wheels
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,from=build,source=/src/constraints.txt,target=/constraints.txt \
    pip install --no-cache-dir --no-compile -c /constraints.txt /wheels/*.whl \
    && groupadd --system --gid 10001 scaler \
    && useradd --system --uid 10001 --gid scaler --create-home --home-dir /home/scaler \
       --shell /usr/sbin/nologin scaler \
    && install -d -o root -g scaler -m 0750 /etc/clearml-scaler
ENV PYTHONUNBUFFERED=1 \
    HOME=/home/scaler
WORKDIR /home/scaler
# a numeric user, so that Kubernetes' runAsNonRoot can check it
USER 10001:10001
# Prometheus metrics (--metrics-port), on every interface of the container: the scaler's
# default is 127.0.0.1, which nothing outside the container could scrape
EXPOSE 9108
ENTRYPOINT ["scaler", "run"]
CMD ["--provider", "aws", "--config", "/etc/clearml-scaler/scaler.conf", "--log-format", "json", "--metrics-port", "9108", "--metrics-host", "0.0.0.0"]
