# The kopflow operator image: `docker build -t kopflow:0.1.0 .`
# Runtime dependencies only (the package and what pyproject.toml's `dependencies` pull in); no
# HEALTHCHECK: Kubernetes probes /healthz (the chart's livenessProbe and readinessProbe).

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/kopflow-*.whl \
    && rm -rf /wheels \
    && groupadd --system --gid 10001 kopflow \
    && useradd --system --uid 10001 --gid kopflow --no-create-home --shell /usr/sbin/nologin kopflow
# Numeric, so the kubelet can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 8081
ENTRYPOINT ["kopflow"]
CMD ["operator"]
