FROM alpine:3.20 AS tools
RUN apk add --no-cache build-base
FROM tools AS final
USER 10001
HEALTHCHECK CMD ["/app", "check"]
