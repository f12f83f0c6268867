#!/usr/bin/env bash
# The local lab's entry point (make demo / make demo-down):
#   scripts/lab.sh up     moto + provision + hosts from moto's state + site.yml; leaves it up
#                         (up --web-count 20: web01..web20 instead of web01, web02;
#                          up --ami-os al2023: Amazon Linux 2023 images, login user ec2-user)
#   scripts/lab.sh down   everything the lab created, then moto (safe to repeat)
#   scripts/lab.sh show   the lab's addresses
# The work is done by the lab package, python -m lab (it prints each step and, on failure,
# which step failed and why). Needs root and `. scripts/podman-env.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python
[ -x "$python" ] || { echo "lab: .venv is missing: run 'make setup' first" >&2; exit 1; }
[ -n "${CONTAINERS_CONF:-}" ] || . scripts/podman-env.sh

case "${1:-}" in
  up)
    shift
    "$python" -m lab up "$@"
    # shellcheck disable=SC2046  # word splitting is the point: three values
    set -- $("$python" -c 'import json; s = json.load(open(".cache/lab/lab.json")); a = s["albs"][0]
print(s["office_host_ip"], a["dns_name"], a["ip"])')
    office_ip=$1 alb_dns=$2 alb_ip=$3
    cat <<TXT

==> The lab is up. This machine is the office (${office_ip}); the VPC is behind the VPN router.
Try:
  ssh -F .cache/ssh_config web01          # through the bastion, as a person would
  curl http://${alb_ip}/                  # the ALB (HAProxy): repeat it, web01 and web02 take turns
  curl --resolve ${alb_dns}:80:${alb_ip} http://${alb_dns}/
  . .cache/lab/env.sh && ansible role_web -m ansible.builtin.command -a hostname
  podman exec fumidai-lab-web02 curl -s http://198.18.0.10/   # (after . .cache/lab/env.sh) egress: prints the NAT instance's address
  scripts/lab.sh show                     # every host, its address and default route
Walkthrough: docs/lab.md. Take it down with: make demo-down
TXT
    ;;
  down) exec "$python" -m lab down ;;
  show) exec "$python" -m lab show ;;
  *) echo "usage: scripts/lab.sh up [--web-count N] [--ami-os OS]|down|show" >&2; exit 2 ;;
esac
