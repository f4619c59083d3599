# ModelGiF Explorer on a GPU host:
#   docker build -t modelgif .
#   docker run --gpus all -p 8501:8501 -v "$HOME/modelgif-data:/data" modelgif
# then open http://localhost:8501. Fields, the built-in zoo, uploads and the Hugging Face cache
# live on the /data volume, so they survive the container. Without --gpus the app runs on the CPU.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MODELGIF_HOME=/data \
    HF_HOME=/data/huggingface \
    NUMBA_CACHE_DIR=/data/.numba \
    MPLCONFIGDIR=/tmp/matplotlib

# A non-root user owns the data volume; the app never runs as root.
RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin modelgif \
    && mkdir -p /data && chown modelgif:modelgif /data

WORKDIR /app
# The same exact pins as the README's setup (torch's Linux wheel brings its CUDA runtime).
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=modelgif:modelgif . .
RUN pip install --no-deps .

USER modelgif
VOLUME ["/data"]
EXPOSE 8501

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).read().strip() != b'ok')"

CMD ["streamlit", "run", "app.py", "--server.address=0.0.0.0", "--server.port=8501", "--server.headless=true"]
