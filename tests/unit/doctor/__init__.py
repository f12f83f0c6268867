"""Unit tests of the doctor (plugins/module_utils/doctor/)."""
