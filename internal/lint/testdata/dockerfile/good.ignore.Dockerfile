# gantry-lint ignore=GL1005,GL1003 reason="a throwaway CI image, never deployed"
FROM alpine:latest
# The next two are fine to ignore:
# gantry-lint ignore=GL1011 reason='the cache is wanted here'
RUN apk add curl
HEALTHCHECK CMD ["/app", "check"]
