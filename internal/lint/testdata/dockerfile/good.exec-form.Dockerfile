FROM alpine:3.20
RUN ["apk", "add", "--no-cache", "tzdata"]
RUN ["/bin/sh", "-c", "apk add --no-cache curl"]
USER 10001
HEALTHCHECK CMD ["/app", "check"]
