# The timeline engine as an image, for docker-compose.yml's service, relay and consumers.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
COPY projections ./projections
COPY consumers ./consumers
RUN pip install --no-cache-dir . && useradd --system --uid 10001 timeline \
 && mkdir -p /var/lib/timeline/keys && chown timeline /var/lib/timeline/keys && chmod 700 /var/lib/timeline/keys
# an empty named volume mounted on /var/lib/timeline/keys takes this owner and mode (compose's `keys`)
USER timeline
ENTRYPOINT ["timeline"]
CMD ["--help"]
