"""Lab tests: playbooks, doctor and login run against real hosts in the podman lab."""
