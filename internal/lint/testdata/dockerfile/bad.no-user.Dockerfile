FROM scratch
COPY app /app
HEALTHCHECK CMD ["/app", "check"]
