# Production image: the console (ASGI) and its Celery workers run from this one image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml README.md manage.py ./
COPY core ./core
COPY console ./console
COPY investigations ./investigations
COPY toolserver ./toolserver
COPY templates ./templates
COPY static ./static
# Editable, so settings find templates/ and static/ beside the code in /app.
RUN pip install --no-cache-dir -e .
# A throwaway key and data folder: collectstatic only reads settings; no secret is baked in.
RUN GATEHOUSE_SECRET_KEY=collectstatic-only-not-a-secret-0123456789abcdefghijklmnop \
    GATEHOUSE_DATA_DIR=/tmp/build python manage.py collectstatic --noinput -v0 \
    && rm -rf /tmp/build

RUN useradd --system --uid 10001 --home-dir /app gatehouse && chown -R gatehouse /app/var
USER gatehouse
EXPOSE 8000
CMD ["python", "manage.py", "serve", "--host", "0.0.0.0", "--port", "8000"]
