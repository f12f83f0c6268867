"""Tag values an attacker who can tag instances might choose (the issue's list, and a few more): the Name tags the
inventory and ssh_config tests seed next to the project's hosts."""

HOSTILE_NAMES = ["0 *", "a b", 'web03\nMatch exec "touch /tmp/fumidai-pwned"', 'it\'s "quoted"', "$(touch /tmp/x)",
                 "%h", "<script>alert(1)</script>", "w" * 300, "ウェブ01", "-oProxyCommand=x", ".hidden", "localhost",
                 "ALL", "web\t01"]
