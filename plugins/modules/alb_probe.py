#!/usr/bin/python
"""fumidai.vpc.alb_probe: request a load balancer's URL until every web host's page has answered through it."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: alb_probe
short_description: Request a URL repeatedly until each expected web host has served the page
description:
  - Sends GET requests to I(url) one after another and reads, from each C(200) answer, the text of the
    page's C(<strong id="served-by">) element (the apache role's index page names the host that served it).
  - Stops as soon as every host in I(hosts) has been seen, or after I(max_requests) requests, or when
    I(timeout) seconds have passed, whichever comes first. A request that fails (no answer, an error status)
    is followed by a pause of I(retry_delay) seconds; answers are requested back to back.
  - Never fails because a host was not seen; the caller decides (the result has C(missing)).
  - What a page says is untrusted, so it is only compared with I(hosts); anything else is reported escaped and
    shortened, at most five distinct values.
  - Makes no AWS call; runs where the play runs (the control node for fumidai's localhost plays).
options:
  url:
    description: The address to request (C(http://) or C(https://)).
    type: str
    required: true
  hosts:
    description:
      - The hosts that must answer, by name, each with the texts that count as that host on the page
        (its inventory name, and the instance ID it falls back to).
    type: dict
    required: true
  max_requests:
    description: At most this many requests.
    type: int
    default: 20
  timeout:
    description: At most this many seconds in all (each request also stops at the time left, 10 s at most).
    type: int
    default: 120
  retry_delay:
    description: Seconds to pause after a request that got no page.
    type: float
    default: 2.0
  validate_certs:
    description: For C(https://), verify the server's certificate chain.
    type: bool
    default: true
  verify_hostname:
    description:
      - For C(https://) with I(validate_certs), also require the certificate to name the URL's host.
        An ALB's own DNS name is never on the site's certificate; the caller turns this off only for that name.
    type: bool
    default: true
author: fumidai maintainers (@fumidai)
"""

EXAMPLES = r"""
- name: Request the ALB until web01 and web02 have both answered
  fumidai.vpc.alb_probe:
    url: http://10.0.1.254/
    hosts:
      web01: [web01, i-0123456789abcdef0]
      web02: [web02, i-0fedcba9876543210]
    max_requests: 20
    timeout: 60
  register: probe
"""

RETURN = r"""
seen:
  description: How many answers each expected host gave.
  type: dict
  returned: always
missing:
  description: The expected hosts that never answered, in the order of I(hosts).
  type: list
  elements: str
  returned: always
requests:
  description: How many requests were sent.
  type: int
  returned: always
elapsed:
  description: Seconds spent.
  type: float
  returned: always
failures:
  description: Requests that got no page, counted by what happened (an HTTP status such as C(HTTP 503), or the error).
  type: dict
  returned: always
others:
  description: Served-by texts that name none of I(hosts) (escaped, shortened), with their counts; at most five.
  type: dict
  returned: always
summary:
  description: One line saying what was seen.
  type: str
  returned: always
"""

import html
import http.client
import re
import ssl
import time
import urllib.error
import urllib.request

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_text import name as shown_name
from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_text import text as shown_text

SERVED_BY = re.compile(r'<strong id="served-by">([^<]{0,256})</strong>')
BODY_LIMIT = 64 * 1024  # the index page is a few hundred bytes; never read more than this
REQUEST_TIMEOUT = 10.0
OTHERS_LIMIT = 5


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer without the page: count it, do not follow it somewhere else."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _opener(validate_certs: bool, verify_hostname: bool) -> urllib.request.OpenerDirector:
    context = ssl.create_default_context()
    if not validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif not verify_hostname:
        context.check_hostname = False
    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirect)


def served_by(body: bytes) -> str | None:
    """The text of the page's served-by element, or None when the page has none."""
    match = SERVED_BY.search(body.decode("utf-8", errors="replace"))
    return html.unescape(match.group(1)).strip() if match else None


def probe(fetch, hosts: dict, max_requests: int, timeout: float, retry_delay: float,
          clock=time.monotonic, sleep=time.sleep) -> dict:
    """Request through ``fetch() -> (status, body)`` until every host in ``hosts`` has answered."""
    owner = {str(text): name for name, texts in hosts.items() for text in (texts or [name])}
    seen = {name: 0 for name in hosts}
    failures: dict[str, int] = {}
    others: dict[str, int] = {}
    started = clock()
    requests = 0
    while requests < max_requests and any(count == 0 for count in seen.values()):
        left = timeout - (clock() - started)
        if left <= 0:
            break
        requests += 1
        try:
            status, body = fetch(min(REQUEST_TIMEOUT, left))
        except (OSError, ValueError, http.client.HTTPException) as exc:
            key = shown_text(getattr(exc, "reason", None) or exc, limit=120)
            failures[key] = failures.get(key, 0) + 1
            sleep(min(retry_delay, max(timeout - (clock() - started), 0)))
            continue
        if status != 200:
            failures[f"HTTP {status}"] = failures.get(f"HTTP {status}", 0) + 1
            sleep(min(retry_delay, max(timeout - (clock() - started), 0)))
            continue
        text = served_by(body)
        if text in owner:
            seen[owner[text]] += 1
            continue
        key = "(no served-by element)" if text is None else shown_name(text)
        if key in others or len(others) < OTHERS_LIMIT:
            others[key] = others.get(key, 0) + 1
    missing = [name for name, count in seen.items() if count == 0]
    elapsed = round(clock() - started, 1)
    answered = ", ".join(f"{name} x{count}" for name, count in seen.items() if count) or "no expected host"
    summary = f"{requests} request(s) in {elapsed}s: {answered}"
    if failures:
        summary += "; no page: " + ", ".join(f"{key} x{count}" for key, count in failures.items())
    if others:
        summary += "; other pages: " + ", ".join(f"{key} x{count}" for key, count in others.items())
    return {"seen": seen, "missing": missing, "requests": requests, "elapsed": elapsed,
            "failures": failures, "others": others, "summary": summary}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "hosts": {"type": "dict", "required": True},
            "max_requests": {"type": "int", "default": 20},
            "timeout": {"type": "int", "default": 120},
            "retry_delay": {"type": "float", "default": 2.0},
            "validate_certs": {"type": "bool", "default": True},
            "verify_hostname": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    params = module.params
    if not re.match(r"^https?://[^/\s]+(/\S*)?$", params["url"]):
        module.fail_json(msg=f"url must be http://host[:port]/path or https://..., got {shown_text(params['url'])}")
    if not params["hosts"]:
        module.fail_json(msg="hosts must name at least one host")
    if params["max_requests"] < 1 or params["timeout"] < 1 or params["retry_delay"] < 0:
        module.fail_json(msg="max_requests and timeout must be at least 1, retry_delay at least 0")
    opener = _opener(params["validate_certs"], params["verify_hostname"])

    def fetch(seconds: float) -> tuple[int, bytes]:
        request = urllib.request.Request(params["url"], headers={"User-Agent": "fumidai-alb-probe"})
        try:
            with opener.open(request, timeout=seconds) as response:
                return response.status, response.read(BODY_LIMIT)
        except urllib.error.HTTPError as exc:  # 3xx (not followed), 4xx, 5xx: an answer without the page
            exc.close()
            return exc.code, b""

    result = probe(fetch, params["hosts"], params["max_requests"], params["timeout"], params["retry_delay"])
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
