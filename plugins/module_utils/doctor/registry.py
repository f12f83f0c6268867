"""The doctor's paths, each registered once: name, walk function, description, the arguments it reads.

The doctor module's ``path`` choices, its required arguments, what it reads from AWS and the report's
"from ..." all come from here. Adding a path is one module with a ``walk(state, target, arguments)``
function and one ``register(...)`` line below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ansible_collections.fumidai.vpc.plugins.module_utils.doctor import egress, http, ssh
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.hops import Walk
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.report import report
from ansible_collections.fumidai.vpc.plugins.module_utils.doctor.state import DoctorError, State

# The module options a path may read, besides path and target, with their defaults.
ARGUMENTS = {"source_cidr": None, "bastion": None, "egress_ports": list(egress.DEFAULT_EGRESS_PORTS)}


@dataclass(frozen=True)
class DoctorPath:
    name: str
    walk: Callable[[State, dict, dict], Walk]
    description: str
    origin: str  # where the path starts, in words; formatted with the arguments
    arguments: tuple[str, ...] = ()  # the options it reads (of ARGUMENTS)
    required: tuple[str, ...] = ()  # of those, the ones it cannot walk without
    reads: tuple[str, ...] = ()  # state it needs beyond the VPC's network (e.g. the load balancers)


PATHS: dict[str, DoctorPath] = {}


def register(path: DoctorPath) -> DoctorPath:
    if path.name in PATHS:
        raise ValueError(f"the doctor already has a path named {path.name}")
    PATHS[path.name] = path
    return path


register(DoctorPath("ssh", ssh.walk, "from the admin's address (source_cidr) through the bastion to the target",
                    origin="{source_cidr} via the bastion", arguments=("source_cidr", "bastion"),
                    required=("source_cidr",)))
register(DoctorPath("http", http.walk, "from the internet through the ALB to the target",
                    origin="the internet via the ALB", reads=("load_balancers",)))
register(DoctorPath("egress", egress.walk, "from the target out to the internet (egress_ports)",
                    origin="the instance to the internet", arguments=("egress_ports",)))


def walk(facts: dict, path: str, target: str, **arguments) -> dict:
    """Walk ``path`` to ``target`` (Name or id) on the VPC's state ``facts``; returns the report as a dict.
    ``arguments``: the path's options (source_cidr, bastion, egress_ports...)."""
    if path not in PATHS:
        raise DoctorError(f"path must be one of {', '.join(PATHS)}, not '{path}'")
    entry = PATHS[path]
    arguments = {**ARGUMENTS, **{k: v for k, v in arguments.items() if v is not None}}
    state = State(facts)
    inst = state.resolve_instance(target, "target")
    return report(entry.walk(state, inst, arguments), entry.origin.format(**arguments))
