# The Inside Airbnb number cruncher as a small image: only what ferry.airbnb.cruncher imports.
# Build from the repository root:
#   docker build -t ferry/numbercruncher -f docker/numbercruncher.Dockerfile .
FROM python:3.11-slim
# Versions as in uv.lock.
RUN pip install --no-cache-dir boto3==1.44.8 pyarrow==26.0.1 pandas==3.1.1
WORKDIR /app
COPY src/ferry/__init__.py ferry/__init__.py
COPY src/ferry/airbnb/__init__.py ferry/airbnb/__init__.py
COPY src/ferry/airbnb/cruncher.py ferry/airbnb/cruncher.py
ENV PYTHONPATH=/app
USER nobody
ENTRYPOINT ["python", "-m", "ferry.airbnb.cruncher"]
