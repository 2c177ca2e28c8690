# The image every Airflow service of docker-compose.yml runs: Airflow's official image plus
# this project's locked dependencies and package. The official image already has the drivers
# Airflow 3 needs for a Postgres metadata database (psycopg2 and the async asyncpg).
# /opt/cxloop/var is created here so that the named volume mounted on it belongs to airflow.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root requirements.lock pyproject.toml /opt/cxloop/
COPY --chown=airflow:root plugins /opt/cxloop/plugins
RUN pip install --no-cache-dir --require-hashes -r /opt/cxloop/requirements.lock \
 && pip install --no-cache-dir --no-deps --no-build-isolation -e /opt/cxloop \
 && mkdir -p /opt/cxloop/var
