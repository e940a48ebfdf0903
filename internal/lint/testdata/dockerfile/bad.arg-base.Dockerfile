ARG BASE=debian
ARG TAG=latest
FROM ${BASE}:${TAG}
USER 10001
HEALTHCHECK CMD ["/app", "check"]
