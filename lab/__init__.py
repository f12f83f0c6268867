"""fumidai's local lab (python -m lab): what moto "launched", built as real Linux hosts; also the local AWS API.

Modules: config (names and paths), settings (lab/vars.yml, web count, image OS), state (moto's VPC, lab.json),
plan (nodes and addresses), kinds (the table of element kinds), render/ + templates/ (generated files),
podman and hostnet (containers, networks, routes), hosts (building them), steps (the steps, down, show),
cli (the command line); moto_local and moto_server (the local AWS API).
"""
