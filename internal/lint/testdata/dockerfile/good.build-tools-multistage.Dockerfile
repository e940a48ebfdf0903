FROM debian:12 AS build
RUN apt-get update && apt-get install -y gcc make
RUN make
FROM debian:12-slim
COPY --from=build /src/app /app
USER 10001
HEALTHCHECK CMD ["/app", "check"]
