# The image every Airflow service of docker-compose.yml runs: Airflow's official image plus
# this project's locked dependencies and package.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root requirements.lock pyproject.toml /opt/cxloop/
COPY --chown=airflow:root plugins /opt/cxloop/plugins
RUN pip install --no-cache-dir --require-hashes -r /opt/cxloop/requirements.lock \
 && pip install --no-cache-dir --no-deps --no-build-isolation -e /opt/cxloop
