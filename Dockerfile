# ModelGiF Explorer on a GPU host:
#   docker build -t modelgif .
#   mkdir -p "$HOME/modelgif-data"
#   docker run --gpus all -p 8501:8501 --user "$(id -u):$(id -g)" -v "$HOME/modelgif-data:/data" modelgif
# then open http://localhost:8501. Fields, the built-in zoo, uploads and the Hugging Face cache live on
# /data, so they survive the container. Create the host folder first and run as yourself: Docker would
# create a missing one owned by root, which the app (uid 1000 by default) cannot write to; the container
# then stops at once and says so. Or keep the data in a named volume, which needs neither:
#   docker run --gpus all -p 8501:8501 -v modelgif-data:/data modelgif
# Without --gpus the app runs on the CPU. .ci/docker-smoke.sh builds and checks all of this.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MODELGIF_HOME=/data \
    HF_HOME=/data/huggingface \
    NUMBA_CACHE_DIR=/data/.numba \
    MODELGIF_ASSETS=/app/assets \
    MPLCONFIGDIR=/tmp/matplotlib

# A non-root user owns the data volume; the app never runs as root.
RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin modelgif \
    && mkdir -p /data && chown modelgif:modelgif /data

WORKDIR /app
# The same exact pins as the README's setup (torch's Linux wheel brings its CUDA runtime).
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=modelgif:modelgif . .
# Readable by any uid (the app runs as the host user with --user): a checkout made under umask 077, or files
# written owner-only, would otherwise hide the shipped zoo from it.
RUN pip install --no-deps . && chmod -R a+rX /app

USER modelgif
VOLUME ["/data"]
EXPOSE 8501

# Healthy when the app answers and its store is writable. The entrypoint stops, saying what to do, when
# the store is not writable at start (docker/entrypoint.sh).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/bin/sh", "/app/docker/entrypoint.sh", "--health"]

ENTRYPOINT ["/bin/sh", "/app/docker/entrypoint.sh"]
CMD ["streamlit", "run", "app.py", "--server.address=0.0.0.0", "--server.port=8501", "--server.headless=true"]
