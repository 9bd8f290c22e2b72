# Nested Learning Lab: the Streamlit app with its shipped models.
#   docker build -t nested-lab .                               # CPU torch (default)
#   docker build --build-arg TORCH_VARIANT=cu128 -t nested-lab:cuda .   # CUDA torch; run with --gpus all
#   docker run -p 8501:8501 nested-lab
FROM python:3.11-slim

ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    STREAMLIT_SERVER_HEADLESS=true \
    STREAMLIT_SERVER_PORT=8501 \
    STREAMLIT_SERVER_ADDRESS=0.0.0.0

RUN apt-get update && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 lab

WORKDIR /app

# torch first, from the variant's index, so the requirements line below finds it already satisfied.
COPY requirements.txt pyproject.toml README.md ./
RUN pip install --index-url ${TORCH_INDEX_URL} torch==2.13.0 \
    && grep -v -E '^(torch|pytest|ruff|playwright)==' requirements.txt > /tmp/requirements-app.txt \
    && pip install -r /tmp/requirements-app.txt

COPY nested ./nested
COPY app ./app
COPY pages ./pages
COPY assets ./assets
COPY .streamlit ./.streamlit
RUN pip install --no-deps --no-build-isolation -e . && chown -R lab:lab /app

USER lab
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD curl --fail http://localhost:8501/_stcore/health || exit 1

# app.serve warms the shared models before the server answers (the health check means warm)
CMD ["python", "-m", "app.serve", "--server.port=8501", "--server.address=0.0.0.0"]
