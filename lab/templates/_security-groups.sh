{# Part of an instance's or ALB's net.sh: its security groups as iptables and ip6tables chains. #}
{% for family in sg %}

# {{ family.title }}
{{ family.chain }} AWS-SG-IN
{{ family.chain }} AWS-SG-OUT
{{ family.chain }} AWS-SRC-DST-CHECK
{{ family.tool }} -w -A AWS-SG-IN -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
{{ family.tool }} -w -A AWS-SG-IN -i lo -j RETURN
{% for rule in family.ingress %}
{{ family.tool }} -w -A AWS-SG-IN {{ rule }}
{% endfor %}
{{ family.tool }} -w -A AWS-SG-IN -j DROP
{{ family.tool }} -w -A AWS-SG-OUT -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
{{ family.tool }} -w -A AWS-SG-OUT -o lo -j RETURN
{% for rule in family.egress %}
{{ family.tool }} -w -A AWS-SG-OUT {{ rule }}
{% endfor %}
{{ family.tool }} -w -A AWS-SG-OUT -j DROP
{% if node.source_dest_check %}
{{ family.tool }} -w -A AWS-SRC-DST-CHECK -j DROP  # source/dest check on: nothing is forwarded
{% endif %}
{{ family.jump }} INPUT AWS-SG-IN 1
{{ family.jump }} OUTPUT AWS-SG-OUT 1
{{ family.jump }} FORWARD AWS-SRC-DST-CHECK 1
{{ family.jump }} FORWARD AWS-SG-IN 2
{{ family.jump }} FORWARD AWS-SG-OUT 3
{% endfor %}
