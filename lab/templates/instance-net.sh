{# An instance's net.sh (boot unit fumidai-lab-net): routes, security groups, login user, key pair. #}
{% include "net-head.sh" %}
{% include "_routes.sh" %}
{% include "_security-groups.sh" %}
{% include "_network-acls.sh" %}

# The login user of the instance's image: created when this image lacks it (the lab's image is Debian,
# with admin), with the passwordless sudo cloud-init gives the default user.
if ! getent passwd {{ user }} >/dev/null; then
  useradd --create-home --shell /bin/bash {{ user }}
  echo '{{ user }} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-fumidai-lab-{{ user }}
  chmod 0440 /etc/sudoers.d/90-fumidai-lab-{{ user }}
fi

# The EC2 key pair, authorised for the image's user (what cloud-init does).
home=$(getent passwd {{ user }} | cut -d: -f6)
install -d -m 0700 -o {{ user }} -g {{ user }} "$home/.ssh"
grep -qxF {{ key | sh }} "$home/.ssh/authorized_keys" 2>/dev/null || echo {{ key | sh }} >> "$home/.ssh/authorized_keys"
chown {{ user }}:{{ user }} "$home/.ssh/authorized_keys"
chmod 0600 "$home/.ssh/authorized_keys"
