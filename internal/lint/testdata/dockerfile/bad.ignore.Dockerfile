FROM alpine:3.20
# gantry-lint ignore=GL1011
RUN apk add curl
# gantry-lint ignore=GL9999 reason="typo"
RUN apk add --no-cache jq
# gantry-lint ignore=GL1011 because
RUN apk add wget
USER 10001
HEALTHCHECK CMD ["/app", "check"]
