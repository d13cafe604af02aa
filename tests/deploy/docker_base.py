"""A local Debian bookworm base image with Python 3.11, made with debootstrap and `docker import`.

No image registry is reachable from these machines, so `python:3.11-slim-bookworm` cannot be pulled. The
Dockerfile takes its base as `BASE_IMAGE`, and the tests pass this one: the same Debian release and Python
minor version as the official slim image, with `python` on PATH (python-is-python3) and `venv`, which is all
the Dockerfile needs from its base. The Debian mirror is the one apt uses on the host.

The image is built once per daemon and reused while its tag exists (`docker rmi` it to rebuild).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from docker_host import run

BASE_TAG = "paretorm-base:bookworm-python3.11"
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Big and useless in an image: apt's package lists and downloaded .debs, docs, man pages, locales.
PRUNE = ("var/lib/apt/lists", "var/cache/apt/archives", "usr/share/doc", "usr/share/man", "usr/share/locale")


def host_mirror() -> str:
    """The Debian mirror in the host's apt sources (deb822 or one-line format), else deb.debian.org."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            match = re.match(r"\s*(?:URIs:|deb)\s+(?:\[[^]]*\]\s+)?(https?://\S+/debian)/?\s", line + " ")
            if match:
                return match.group(1)
    return DEFAULT_MIRROR


def image_exists(tag: str) -> bool:
    return run("docker", "image", "inspect", tag, check=False).returncode == 0


def build_base_image(tag: str = BASE_TAG) -> bool:
    """Make `tag` unless it exists; True when it was built now."""
    if image_exists(tag):
        return False
    with tempfile.TemporaryDirectory(prefix="paretorm-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        run(
            "debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
            SUITE, str(root), host_mirror(), timeout=1800,
        )  # fmt: skip
        for relative in PRUNE:
            subprocess.run(["rm", "-rf", str(root / relative)], check=True)
            (root / relative).mkdir(parents=True, exist_ok=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import", "--change", 'CMD ["python3"]', "-", tag],
            stdin=tar.stdout, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        tar.wait()
        if tar.returncode != 0 or imported.returncode != 0:
            raise RuntimeError(f"docker import of the debootstrap rootfs failed: {imported.stderr}")
    return True
