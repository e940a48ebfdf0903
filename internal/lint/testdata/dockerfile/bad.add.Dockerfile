FROM alpine:3.20
ADD https://example.com/tool.tar.gz /opt/
ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.com/ok.tar.gz /opt/
ADD git@github.com:acme/lib.git#main /src/lib
ADD https://github.com/acme/lib.git#0123456789abcdef0123456789abcdef01234567 /src/pinned
ADD rootfs.tar.gz /
ADD config.json /etc/app/
USER 10001
HEALTHCHECK CMD ["/app", "check"]
