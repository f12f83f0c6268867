"""Filters for the login identity: image_lookup gives provisioning the image and login user of an ami_os,
image_os_problems checks an ami_os before anything is created.

Both read the one table in module_utils/login.py, which the inventory plugin and the lab read too, so the
image provisioning launches and the user every tool logs in as cannot disagree.

Each filter is documented in its sidecar beside this file (image_lookup.yml, image_os_problems.yml), which
ansible-doc reads: ``ansible-doc -t filter fumidai.vpc.image_lookup``.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.fumidai.vpc.plugins.module_utils import login


def fumidai_image_lookup(os_key):
    """{os, owner, name, user} for an ami_os; fails naming the choices when it is not one."""
    try:
        return login.image_lookup(os_key)
    except login.UnknownImageOS as exc:
        raise AnsibleFilterError(f"fumidai.vpc.image_lookup: {exc}") from None


def fumidai_image_os_problems(os_key, variable="ami_os"):
    """[] for a known ami_os, else one sentence naming the variable, the value and the choices."""
    problem = login.image_os_problem(os_key, variable)
    return [problem] if problem else []


class FilterModule:
    def filters(self):
        return {"image_lookup": fumidai_image_lookup, "image_os_problems": fumidai_image_os_problems}
