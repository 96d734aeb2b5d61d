-- docker-compose: launchready's own state database beside the app database.
CREATE DATABASE launchready;
