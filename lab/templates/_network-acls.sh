{# Part of a VPC node's net.sh: its subnet's network ACL as stateless iptables and ip6tables chains. #}
{% for family in network_acl_rules(plan, node) %}

# {{ family.title }}
{{ family.chain }} AWS-NACL-IN
{{ family.chain }} AWS-NACL-OUT
{{ family.tool }} -w -A AWS-NACL-IN -i lo -j RETURN
{{ family.tool }} -w -A AWS-NACL-OUT -o lo -j RETURN
{% for net in family.subnet %}
{{ family.tool }} -w -A AWS-NACL-IN -s {{ net }} -j RETURN  # within the subnet: no ACL on the way
{{ family.tool }} -w -A AWS-NACL-OUT -d {{ net }} -j RETURN
{% endfor %}
{% for rule in family.ingress %}
{{ family.tool }} -w -A AWS-NACL-IN {{ rule }}
{% endfor %}
{{ family.tool }} -w -A AWS-NACL-IN -j DROP
{% for rule in family.egress %}
{{ family.tool }} -w -A AWS-NACL-OUT {{ rule }}
{% endfor %}
{{ family.tool }} -w -A AWS-NACL-OUT -j DROP
{# Before the security groups: AWS applies the subnet's ACL at its edge, the group at the interface. #}
{{ family.jump }} INPUT AWS-NACL-IN 1
{{ family.jump }} OUTPUT AWS-NACL-OUT 1
{{ family.jump }} FORWARD AWS-NACL-OUT 1
{{ family.jump }} FORWARD AWS-NACL-IN 1
{% endfor %}
