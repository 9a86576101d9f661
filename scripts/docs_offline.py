"""The documentation site without a network: Material's search from file:// needs the `iframe-worker`
shim (chromium refuses web workers from file:// URLs), which Material's offline plugin would load from
unpkg.com. We take the npm package instead, pinned and checked, and ship its shim inside the built site.

    .venv/bin/python scripts/docs_offline.py     # fetch it once (scripts/setup.sh does)

As a MkDocs hook (mkdocs.yml `hooks:`), it refuses to build without the shim and copies it, with its
licence, to assets/javascripts/ of the site, where mkdocs.yml's `extra.polyfills` points.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import tarfile
import urllib.request
from pathlib import Path

PACKAGE = "iframe-worker"
VERSION = "1.0.4"
TARBALL = f"https://registry.npmjs.org/{PACKAGE}/-/{PACKAGE}-{VERSION}.tgz"
# npm's `dist.integrity` of that tarball
INTEGRITY = "sha512-roeaaI+Lg1LJNfgpCjoRe/+WzEjy9+Z08LoEvu85MCPbBjwm+qXz8Ag5U05lHa6V1CysZyGzE0SOkAtSUA5q7Q=="
SITE_PATH = "assets/javascripts/iframe-worker-shim.js"
MEMBERS = {"package/shim/index.js": "iframe-worker-shim.js", "package/LICENSE": "iframe-worker-LICENSE"}


def cache_dir() -> Path:
    root = os.environ.get("REPO_AGENT_CACHE") or Path.home() / ".cache" / "repo-agent"
    return Path(root) / "docs" / f"{PACKAGE}-{VERSION}"


def fetch() -> Path:
    """Download, check against the pinned integrity, and unpack the two files into the cache."""
    target = cache_dir()
    if all((target / name).is_file() for name in MEMBERS.values()):
        return target
    with urllib.request.urlopen(TARBALL, timeout=60) as response:
        data = response.read()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != INTEGRITY:
        raise SystemExit(f"{TARBALL}: integrity {digest} is not the pinned {INTEGRITY}")
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member, name in MEMBERS.items():
            extracted = archive.extractfile(member)
            if extracted is None:
                raise SystemExit(f"{TARBALL} has no {member}")
            (target / name).write_bytes(extracted.read())
    return target


def _missing() -> str:
    return (f"the documentation site needs {PACKAGE} {VERSION} (search from file:// without unpkg.com): "
            f"run .venv/bin/python scripts/docs_offline.py (scripts/setup.sh does)")


def on_config(config):  # MkDocs hook
    from mkdocs.exceptions import PluginError

    if not all((cache_dir() / name).is_file() for name in MEMBERS.values()):
        raise PluginError(_missing())
    if SITE_PATH not in [str(script) for script in config.extra.get("polyfills", [])]:
        raise PluginError(f"mkdocs.yml: extra.polyfills must name {SITE_PATH}, or Material loads the shim from unpkg.com")
    return config


def on_post_build(config):  # MkDocs hook
    out = Path(config.site_dir) / Path(SITE_PATH).parent
    out.mkdir(parents=True, exist_ok=True)
    for name in MEMBERS.values():
        shutil.copyfile(cache_dir() / name, out / name)


if __name__ == "__main__":
    print(f"{PACKAGE} {VERSION} in {fetch()}")
