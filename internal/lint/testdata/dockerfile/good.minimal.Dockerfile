FROM scratch
COPY app /app
USER 65532:65532
HEALTHCHECK CMD ["/app", "check"]
ENTRYPOINT ["/app"]
