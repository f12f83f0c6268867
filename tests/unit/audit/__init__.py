"""Unit tests of the security audit (plugins/module_utils/audit_checks.py, audit_group_checks.py,
audit_report.py)."""
