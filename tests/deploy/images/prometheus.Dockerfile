# Test-only Prometheus image: Debian's prometheus binary on the local debootstrap base, laid out like
# prom/prometheus (binary /bin/prometheus, data /prometheus, user nobody) so docker-compose.yml runs it
# unchanged with PROMETHEUS_IMAGE. Built by tests/deploy/docker_images.py where no registry is reachable.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY prometheus /bin/prometheus
RUN mkdir -p /prometheus /etc/prometheus && chown 65534:65534 /prometheus
USER 65534:65534
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
