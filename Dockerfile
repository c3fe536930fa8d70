FROM python:3.11-slim
WORKDIR /app
COPY client ./client
COPY pyproject.toml README.md ./
COPY service ./service
COPY worker ./worker
COPY examples ./examples
COPY bench ./bench
RUN pip install --no-cache-dir ./client ".[qpu]" && useradd -r qfleet
USER qfleet
CMD ["qfleet", "api", "--host", "0.0.0.0", "--port", "8000"]
