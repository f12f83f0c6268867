"""DHEat rate limit: the role's own chain, admins exempt, others limited."""

from __future__ import annotations

from conftest import (
    ADMIN_CIDRS,
    EXEMPT_CIDRS,
    EXEMPT_CIDRS_V4,
    EXEMPT_CIDRS_V6,
    RATELIMIT_CHAIN,
    chain_counters,
    connect_burst,
    ip_of,
)

BASTION = ip_of("bastion")
CHAIN = RATELIMIT_CHAIN
BURST = 10
ATTEMPTS = 30


def test_chain_hooked_once_at_the_top_of_input(bastion):
    rules = bastion.check_output("iptables -w -S INPUT").splitlines()
    hooks = [r for r in rules if r.endswith(f"-j {CHAIN}")]
    assert len(hooks) == 1
    assert "--dport 22" in hooks[0] and "--ctstate NEW" in hooks[0]
    # Only fail2ban may sit above it (it inserts its own jump at the top too).
    above = rules[1 : rules.index(hooks[0])]
    assert all("f2b-" in r for r in above), above


def test_foreign_input_rules_are_kept(bastion):
    # prepare.yml's stand-in for the lab's security-group rules.
    assert "lab-security-group" in bastion.check_output("iptables -w -S INPUT")


def test_admin_cidrs_return_before_the_limit(bastion):
    rules = bastion.check_output(f"iptables -w -S {CHAIN}").splitlines()[1:]
    returns = [r for r in rules if r.endswith("-j RETURN")]
    assert [r.split("-s ")[1].split()[0] for r in returns] == EXEMPT_CIDRS_V4
    assert "hashlimit" in rules[-1] and rules[-1].endswith("-j DROP")


def test_whole_internet_admin_ranges_are_accepted_but_never_exempt(bastion):
    """admin_cidrs lists 0.0.0.0/0 and ::/0 with allow_ssh_from_anywhere: the role converged
    (preflight accepts them too), and exempts neither from the rate limit or fail2ban."""
    assert {"0.0.0.0/0", "::/0"} <= set(ADMIN_CIDRS)
    rules_v4 = bastion.check_output(f"iptables -w -S {CHAIN}").splitlines()
    rules_v6 = bastion.check_output(f"ip6tables -w -S {CHAIN}").splitlines()
    assert [r for r in rules_v4 if r.endswith("-j RETURN")] == [
        f'-A {CHAIN} -s {cidr} -m comment --comment "admin CIDR: never limited" -j RETURN' for cidr in EXEMPT_CIDRS_V4
    ]
    # The narrow IPv6 admin range is exempt in ip6tables (and only there); ::/0 is not.
    assert [r for r in rules_v6 if r.endswith("-j RETURN")] == [
        f'-A {CHAIN} -s {cidr} -m comment --comment "admin CIDR: never limited" -j RETURN' for cidr in EXEMPT_CIDRS_V6
    ]
    jail = bastion.file("/etc/fail2ban/jail.d/bastion-sshd.local").content_string.splitlines()
    assert [line for line in jail if line.startswith("ignoreip")] == [
        "ignoreip = 127.0.0.1/8 ::1 " + " ".join(EXEMPT_CIDRS)
    ]
    # Behaviourally: test_non_admin_burst_is_limited (below) and the outsider's ban
    # (test_40) happen although 0.0.0.0/0 is an admin CIDR.


def test_ipv6_chain_present(bastion):
    assert f"-j {CHAIN}" in bastion.check_output("ip6tables -w -S INPUT")


def test_persisted_by_the_roles_own_unit(bastion):
    unit = bastion.service("bastion-ssh-ratelimit")
    assert unit.is_enabled
    assert bastion.run("/usr/local/sbin/bastion-ssh-ratelimit check").rc == 0


def test_non_admin_burst_is_limited(private, bastion):
    before = chain_counters(bastion).get("DROP", 0)
    script = f"for i in $(seq {ATTEMPTS}); do (nc -z -w 3 {BASTION} 22 && echo ok || echo dropped) & done; wait"
    outcomes = private.check_output(script).split()
    assert len(outcomes) == ATTEMPTS
    assert outcomes.count("ok") <= BURST + 2  # burst plus what the 1/s rate refills meanwhile
    assert outcomes.count("dropped") >= ATTEMPTS - BURST - 2
    assert chain_counters(bastion)["DROP"] > before


def test_admin_burst_is_not_limited(bastion):
    before = chain_counters(bastion)
    assert all(connect_burst(BASTION, ATTEMPTS))
    after = chain_counters(bastion)
    assert after["RETURN"] - before["RETURN"] >= ATTEMPTS
    assert after["DROP"] == before["DROP"]
