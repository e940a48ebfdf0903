# syntax=docker/dockerfile:1
FROM debian:12-slim
RUN <<EOF
set -e
apt-get update
apt-get install -y gcc
EOF
RUN <<EOF bash
pip install flask
EOF
RUN cat <<EOF > /etc/motd
apt-get install -y not-a-command
EOF
COPY <<EOF /etc/app.conf
DB_PASSWORD=not-an-env
EOF
USER 10001
HEALTHCHECK CMD ["/app", "check"]
