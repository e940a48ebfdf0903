FROM alpine:3.20 AS base
RUN adduser -D app
USER app
HEALTHCHECK CMD ["/app", "check"]

FROM base AS app
COPY app /app
