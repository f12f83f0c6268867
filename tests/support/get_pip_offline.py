"""ansible-test's pip bootstrap, without its download: installed as ~/.ansible/test/cache/get_pip_<version>.py.

Every ansible-test sanity test with requirements runs in a virtual environment of its own, created without pip
and bootstrapped by get-pip.py, which ansible-test downloads once from ci-files.testing.ansible.com into
~/.ansible/test/cache/ (its message says the file may be saved there by hand). That host is not reachable here;
PyPI is. This script does what get-pip does with the arguments ansible-test passes
(``pip==<version> --no-setuptools --no-wheel``): put pip into the running interpreter's environment (from the
interpreter's own ensurepip), then install the requested pip from the package index, and leave setuptools and
wheel out when asked to. ansible-test runs it with runpy as ``__main__``, inside the new virtual environment.
"""

from __future__ import annotations

import subprocess
import sys


def installed(module: str) -> bool:
    """Whether a fresh interpreter of this environment imports ``module`` (this process may have stale caches)."""
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, check=False).returncode == 0


def main(argv: list[str]) -> int:
    flags = {arg for arg in argv if arg in ("--no-setuptools", "--no-wheel")}
    requested = [arg for arg in argv if arg not in flags]
    had_setuptools = installed("setuptools")
    # ensurepip ships with CPython (Debian: python3-venv); it brings a pip that can install the requested one.
    subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-m", "pip", "install", "--upgrade", "--force-reinstall", *requested],
                   check=True)
    # ensurepip of Python <= 3.11 also installs setuptools; get-pip.py --no-setuptools would not have.
    if "--no-setuptools" in flags and not had_setuptools and installed("setuptools"):
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet", "setuptools"], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
