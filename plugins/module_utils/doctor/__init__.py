"""The doctor: walks a network path through a VPC hop by hop; the paths it knows are in registry.py."""
