{# The managed NAT gateway container's net.sh: routes and masquerading for the VPC. #}
{% include "net-head.sh" %}
{% include "_routes.sh" %}

# The managed NAT gateway: translate the VPC's traffic to its own address.
chain LAB-NAT-GW
jump_first FORWARD LAB-NAT-GW 1
iptables -w -A LAB-NAT-GW -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables -w -A LAB-NAT-GW -s {{ plan.vpc_cidr }} ! -d {{ plan.vpc_cidr }} -j ACCEPT
iptables -w -A LAB-NAT-GW -j DROP
iptables -w -t nat -C POSTROUTING -s {{ plan.vpc_cidr }} ! -d {{ plan.vpc_cidr }} -j MASQUERADE 2>/dev/null || iptables -w -t nat -A POSTROUTING -s {{ plan.vpc_cidr }} ! -d {{ plan.vpc_cidr }} -j MASQUERADE
{% include "_network-acls.sh" %}
