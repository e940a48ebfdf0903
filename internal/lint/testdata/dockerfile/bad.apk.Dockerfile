FROM alpine:3.20
RUN apk update && apk add curl
RUN apk add --no-cache tzdata
RUN apk add jq && rm -rf /var/cache/apk/*
RUN --mount=type=cache,target=/var/cache/apk apk add ca-certificates
USER 10001
HEALTHCHECK CMD ["/app", "check"]
