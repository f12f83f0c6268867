"""Benchmarks of the inventory plugin (against moto) and of the fan-out over lab hosts."""
