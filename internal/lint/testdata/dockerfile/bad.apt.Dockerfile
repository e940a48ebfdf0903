FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates
RUN apt-get update && apt-get install -y curl && rm -rf /var/lib/apt/lists/*
RUN --mount=type=cache,target=/var/lib/apt/lists --mount=type=cache,target=/var/cache/apt apt-get update && apt-get install -y tzdata
RUN apt install -y jq
RUN rm -rf /var/lib/apt/lists/*
RUN echo "apt-get install gcc" # a string, not a command
USER 10001
HEALTHCHECK CMD ["/app", "check"]
