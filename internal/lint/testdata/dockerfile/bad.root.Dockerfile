FROM alpine:3.20
RUN adduser -D app
USER app
RUN echo hello
USER root
HEALTHCHECK CMD ["/app", "check"]
