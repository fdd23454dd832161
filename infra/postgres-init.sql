-- Run once by the postgres image on an empty volume: POSTGRES_DB creates `mlflow`, this creates Prefect's and
-- the one of MLflow's basic-auth app.
CREATE DATABASE prefect;
CREATE DATABASE mlflow_auth;
