{# The VPN router container's net.sh: forwards from the office range into the VPC only. #}
{% include "net-head.sh" %}
ip route del default 2>/dev/null || true
chain LAB-ROUTER
jump_first FORWARD LAB-ROUTER 1
iptables -w -A LAB-ROUTER -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables -w -A LAB-ROUTER -s {{ plan.office_cidr }} -d {{ plan.vpc_cidr }} -j ACCEPT
iptables -w -A LAB-ROUTER -j DROP
