# The Inside Airbnb number cruncher as a small image: only what ferry.airbnb.cruncher imports.
# `ferry stack up --docker` assembles the build context (ferry.stack.docker_images): BASE is
# ferry/debian:<release> (debootstrap of this machine's Debian, with python3), site-packages/
# holds boto3, pyarrow and pandas at uv.lock's versions, app/ the cruncher's modules.
ARG BASE=ferry/debian:bookworm
FROM ${BASE}
COPY site-packages /opt/ferry/site-packages
COPY app /opt/ferry/app
ENV PYTHONPATH=/opt/ferry/site-packages:/opt/ferry/app PYTHONDONTWRITEBYTECODE=1
USER nobody
ENTRYPOINT ["python3", "-m", "ferry.airbnb.cruncher"]
