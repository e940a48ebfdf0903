FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc=4:12.2.0-3 make git ca-certificates \
 && rm -rf /var/lib/apt/lists/*
USER 10001
HEALTHCHECK CMD ["/app", "check"]
