#!/usr/bin/env python3
"""moto's server with the few compatibility fixes fumidai needs.

Kept separate from the launcher so the fixes are in one documented place and
the playbooks stay free of anything moto-specific. See FIXES below.
"""

from __future__ import annotations

import argparse

from moto.server import ThreadedMotoServer  # noqa: F401  (imported for the patches' side effects)


def apply_fixes() -> None:
    """Fixes for moto behaviour that differs from AWS in ways amazon.aws notices.

    (Filled in by the provisioning work: DescribeTags resource types for EIPs
    and NAT gateways.)
    """


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    apply_fixes()
    from moto.server import run_simple, DomainDispatcherApplication, create_backend_app  # noqa: E402

    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, app, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
