{# Part of every VPC node's net.sh: its subnet's default route and the VGW route to the office. #}
{% if node.default_via %}
ip route replace default via {{ node.default_via }} dev eth0
{% else %}
ip route del default 2>/dev/null || true  # no route to the internet in this subnet
{% endif %}
ip route replace {{ plan.office_cidr }} via {{ plan.vgw_ip }} dev eth0  # VGW route to the office
