{# Part of every VPC node's net.sh: its subnet's routes (default and more specific) and the VGW route to the office. #}
{% if node.default_via %}
ip route replace default via {{ node.default_via }} dev eth0
{% else %}
ip route del default 2>/dev/null || true  # no route to the internet in this subnet
{% endif %}
{# proto 77 marks the routes below as the route table's, so a re-run removes those the table no longer has. #}
ip route flush proto 77 2>/dev/null || true
{% for route in node.get("routes", []) %}
{% if route.via %}
ip route replace {{ route.cidr }} via {{ route.via }} dev eth0 proto 77
{% else %}
ip route replace blackhole {{ route.cidr }} proto 77  # a blackhole route (its target is gone): dropped, as on AWS
{% endif %}
{% endfor %}
ip route replace {{ plan.office_cidr }} via {{ plan.vgw_ip }} dev eth0  # VGW route to the office
