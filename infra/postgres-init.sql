-- Run once by the postgres image on an empty volume: POSTGRES_DB creates `mlflow`, this creates Prefect's.
CREATE DATABASE prefect;
