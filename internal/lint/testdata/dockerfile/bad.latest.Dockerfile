FROM golang:latest AS build
RUN go build -o /app .
FROM alpine
COPY --from=build /app /app
USER 10001
HEALTHCHECK CMD ["/app", "check"]
