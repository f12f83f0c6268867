"""Unit tests: module_utils, the inventory plugin and playbook pieces, mostly in-process (moto's mock_aws), no hosts."""
