FROM python:3.12-slim
ENV DB_PASSWORD_FILE=/run/secrets/db_password \
    GPG_KEY=A035C8C19219BA821ECEA86B64E628F8D684696D \
    PUBLIC_KEY=not-a-secret \
    TOKEN_TTL=3600 \
    PYTHON_SHA256=8fb5f9fbc7609fa822cb31549884575db7fd9657cbffb89510b5d7975963a83a \
    DATABASE_URL=postgres://db:5432/app \
    PATH=/usr/local/bin:/usr/bin
RUN --mount=type=secret,id=pip_token,env=PIP_TOKEN pip install --no-cache-dir flask
USER 10001
HEALTHCHECK CMD ["python", "-c", "print(1)"]
