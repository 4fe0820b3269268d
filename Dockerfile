# The timeline engine as an image, for docker-compose.yml's relay and consumers.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
COPY projections ./projections
COPY consumers ./consumers
RUN pip install --no-cache-dir . && useradd --system --uid 10001 timeline
USER timeline
ENTRYPOINT ["timeline"]
CMD ["--help"]
