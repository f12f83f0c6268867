{# The ALB container's net.sh: routes and its security groups (HAProxy itself: haproxy.cfg). #}
{% include "net-head.sh" %}
{% include "_routes.sh" %}
{% include "_security-groups.sh" %}
{% include "_network-acls.sh" %}
