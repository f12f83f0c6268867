"""Login identity of fumidai's hosts: the image OS → login user and image lookup mapping, and the image classifier.

One table, ``IMAGE_OS``, says for each operating system fumidai launches where provisioning finds its image
(owner account and name pattern) and which user cloud-init authorises the key for. Provisioning (the
``fumidai.vpc.image_lookup`` filter), the inventory plugin (per host, from each instance's image) and the
local lab all read it, so the login user has one home.

Strict by design: the login user is only ever one of this table's values. What AWS says about an image (name,
owner, description) is untrusted and only used to *pick* a row; an image that matches no row is unknown
(``None``), and its text never becomes a user name.

Pure Python, standard library only.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple


class ImageOS(NamedTuple):
    """One operating system: how provisioning finds its image and whom to log in as."""

    key: str                # the ami_os setting's value
    owner: str              # the AWS account that publishes the image
    name: str               # DescribeImages name filter provisioning uses (newest match wins)
    user: str               # the login user cloud-init authorises the key pair for
    family: str             # name pattern of every image of this OS (any architecture or build)
    title: str              # for messages


IMAGE_OS: Mapping[str, ImageOS] = MappingProxyType({
    "debian12": ImageOS("debian12", owner="136693071363", name="debian-12-amd64-*", user="admin",
                        family="debian-12-*", title="Debian 12"),
    "al2023": ImageOS("al2023", owner="137112412989", name="al2023-ami-2023.*-x86_64", user="ec2-user",
                      family="al2023-ami-*", title="Amazon Linux 2023"),
})
DEFAULT_OS = "debian12"
LOGIN_USERS = frozenset(entry.user for entry in IMAGE_OS.values())


class UnknownImageOS(ValueError):
    """An ami_os value that is not a key of IMAGE_OS."""


def choices() -> list[str]:
    """The valid ami_os values, in table order."""
    return list(IMAGE_OS)


def image_os_problem(os_key: object, variable: str = "ami_os") -> str | None:
    """A sentence naming the variable and the bad value, or None when ``os_key`` is a known OS."""
    if isinstance(os_key, str) and os_key in IMAGE_OS:
        return None
    return f"{variable}: {os_key!r} is not an operating system fumidai launches (one of {', '.join(IMAGE_OS)})"


def image_os(os_key: object) -> ImageOS:
    """The table row for ``os_key``; raises UnknownImageOS with a sentence naming the choices."""
    problem = image_os_problem(os_key)
    if problem:
        raise UnknownImageOS(problem)
    return IMAGE_OS[os_key]  # type: ignore[index]


def login_user(os_key: object) -> str:
    """The login user of the images of ``os_key`` (raises UnknownImageOS)."""
    return image_os(os_key).user


def image_lookup(os_key: object) -> dict:
    """What provisioning filters DescribeImages by, and the user: {os, owner, name, user}."""
    entry = image_os(os_key)
    return {"os": entry.key, "owner": entry.owner, "name": entry.name, "user": entry.user}


def _field(image: Mapping, camel: str, snake: str) -> str:
    """A DescribeImages field in boto3's CamelCase or amazon.aws's snake_case; '' when absent or not text."""
    value = image.get(camel, image.get(snake))
    return value if isinstance(value, str) else ""


def classify_image(image: object) -> str | None:
    """The IMAGE_OS key of an EC2 image as DescribeImages returns it, or None when it is none of them.

    An image belongs to an OS when its owner is that OS's publisher *and* its name is of that OS's family:
    a look-alike name from another account is not trusted, nor is another product of the same publisher.
    Windows images (PlatformDetails other than Linux/UNIX) are never a match.
    """
    if not isinstance(image, Mapping):
        return None
    owner = _field(image, "OwnerId", "owner_id")
    name = _field(image, "Name", "name")
    platform = _field(image, "PlatformDetails", "platform_details")
    if platform and not platform.startswith("Linux/UNIX"):
        return None
    for entry in IMAGE_OS.values():
        if owner == entry.owner and fnmatch.fnmatchcase(name, entry.family):
            return entry.key
    return None


def user_of_image(image: object, default: str | None = None) -> str | None:
    """The login user for an EC2 image: its OS's user from IMAGE_OS, else ``default`` (which the caller
    chose; never anything read from the image)."""
    os_key = classify_image(image)
    return IMAGE_OS[os_key].user if os_key else default
