{# The internet gateway container's net.sh: forwards only for nodes with a public address. #}
{% include "net-head.sh" %}
ip route del default 2>/dev/null || true
chain LAB-ROUTER
jump_first FORWARD LAB-ROUTER 1
iptables -w -A LAB-ROUTER -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
{# Only what has a public IP (or EIP) talks to the internet; a private instance that routed here directly would get nowhere, as on AWS. #}
{% for other in public_nodes %}
iptables -w -A LAB-ROUTER -s {{ other.ip }} -d {{ plan.internet_cidr }} -j ACCEPT  # {{ other.name }}
iptables -w -A LAB-ROUTER -s {{ plan.internet_cidr }} -d {{ other.ip }} -j ACCEPT
{% endfor %}
iptables -w -A LAB-ROUTER -j DROP
