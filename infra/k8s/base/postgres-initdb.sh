#!/bin/sh
# Runs once, when Postgres starts on an empty data directory (/docker-entrypoint-initdb.d):
# one role and one database each for the MLflow backend store and the Optuna storage, and the
# database of MLflow's users and permissions (basic-auth app), owned by the same role mlflow.
# The passwords come from the Secret s2ac-postgres through the container's environment; psql
# quotes them (:'var'), so they never appear in this file or in a command line.
set -eu
psql --set ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  --set mlflow_password="$MLFLOW_DB_PASSWORD" \
  --set optuna_password="$OPTUNA_DB_PASSWORD" <<'SQL'
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE mlflow_auth OWNER mlflow;
CREATE ROLE optuna LOGIN PASSWORD :'optuna_password';
CREATE DATABASE optuna OWNER optuna;
SQL
