FROM python:3.12-slim AS first
RUN pip install flask
RUN python3 -m pip install requests
RUN pip3 install --no-cache-dir gunicorn
RUN --mount=type=cache,target=/root/.cache/pip pip install uvicorn
FROM first
ENV PIP_NO_CACHE_DIR=1
RUN pip install celery
USER 10001
HEALTHCHECK CMD ["python", "-c", "1"]
