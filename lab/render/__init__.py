"""Renders the lab's template files (lab/templates/, Jinja2 in a sandbox) with values that may come from AWS."""

from __future__ import annotations

import shlex
from pathlib import Path

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from lab.proc import LabError
from lab.render.network_acls import network_acl_rules

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def _one_line(value: object) -> object:
    """Every value lands inside one line of shell, HAProxy or systemd text: a line break from the API
    would start a command or a directive of its own."""
    if isinstance(value, str) and any(c in value for c in "\r\n\0"):
        raise LabError(f"refusing to write a value with a line break into a generated file: {value[:60]!r}")
    return value


_ENV = SandboxedEnvironment(loader=FileSystemLoader(str(TEMPLATES)), undefined=StrictUndefined,
                            keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False,
                            finalize=_one_line)
_ENV.filters["sh"] = shlex.quote
# Every VPC node's net.sh includes its subnet's ACL (_network-acls.sh): one function, not one argument per kind.
_ENV.globals["network_acl_rules"] = network_acl_rules


def render(template: str, **values: object) -> str:
    return _ENV.get_template(template).render(**values)


def text(template: str) -> str:
    """A template file used as it is (no values; its opening comment line is dropped)."""
    return render(template)
