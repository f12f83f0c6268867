"""Integration tests: the collection's real playbooks and plugins run against a local moto server."""
