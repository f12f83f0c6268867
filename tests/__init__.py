"""The collection's tests: unit (no server), integration (a moto server), lab (podman hosts), sanity, support."""
