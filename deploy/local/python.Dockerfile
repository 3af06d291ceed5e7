# localhost/python:3.11-bookworm: what the Dockerfile needs of python:3.11-slim-bookworm, built
# from a debootstrap'd Debian without a registry (deploy/build-local.sh). Context: a directory
# whose ca-certificates/ holds extra CA certificates (*.crt) to trust, e.g. an egress proxy's.
ARG DEBIAN_IMAGE=localhost/debian:bookworm
FROM ${DEBIAN_IMAGE}
COPY ca-certificates/ /usr/local/share/ca-certificates/
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && update-ca-certificates \
    && ln -s /usr/bin/python3 /usr/local/bin/python \
    && rm -rf /var/lib/apt/lists/*
# pip and requests trust the system store (with the certificates above), not only certifi's.
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
