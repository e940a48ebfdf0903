FROM debian:12-slim

RUN apt-get update \
# a comment inside the continuation
    && apt-get install -y \
        make \
    && echo done

USER 10001
HEALTHCHECK CMD ["/app", "check"]
