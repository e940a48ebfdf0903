FROM alpine:3.20
RUN apk add --no-cache --virtual .build-deps gcc musl-dev \
 && make -C /src \
 && apk del .build-deps
RUN apk add --no-cache git && git clone https://example.com/x.git /x && apk del git
USER 10001
HEALTHCHECK CMD ["/app", "check"]
