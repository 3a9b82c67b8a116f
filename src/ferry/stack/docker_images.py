"""The images the pipelines run, built on this machine: no registry is needed (or reachable).

- ``ferry/debian:<release>``: this machine's Debian release from Debian's own archive
  (``debootstrap --variant=minbase`` with python3 and CA certificates), imported as an image.
  The root file system is cached as a tarball in ``.cache/docker/`` of the checkout, so a new
  ``FERRY_HOME`` (a test session) imports it in seconds instead of bootstrapping again.
- ``ferry/numbercruncher:latest``: ``docker/numbercruncher.Dockerfile`` on that base, with the
  cruncher's module and its Python packages (boto3, pyarrow, pandas at the versions in
  ``uv.lock``) installed from PyPI by uv on the host. pip inside ``docker build`` cannot be
  used where outgoing TLS passes a proxy whose CA only the host trusts.

Each image carries a label with the digest of its inputs; it is rebuilt only when that changes.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path

from ferry.stack.errors import StackError
from ferry.stack.settings import project_root

CRUNCHER_IMAGE = "ferry/numbercruncher:latest"
#: What the cruncher imports, copied into the image (nothing else of ferry goes in).
CRUNCHER_MODULES = ("ferry/__init__.py", "ferry/extras.py", "ferry/airbnb/__init__.py", "ferry/airbnb/cruncher.py")
CRUNCHER_PACKAGES = ("boto3", "pyarrow", "pandas")
BASE_PACKAGES = ("python3", "ca-certificates")
INPUTS_LABEL = "org.ferry.inputs"


def debian_release() -> tuple[str, str]:
    """(codename, mirror) of this machine's Debian: the base image is the same release."""
    fields = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    codename = fields.get("VERSION_CODENAME", "").strip('"')
    if not codename:
        raise StackError("docker: cannot tell this machine's Debian release (/etc/os-release has no VERSION_CODENAME)")
    mirror = "http://deb.debian.org/debian"
    for source in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))]:
        text = source.read_text() if source.exists() else ""
        found = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.M) or re.search(r"^deb\s+(\S+/debian)\s", text, re.M)
        if found:
            mirror = found.group(1)
            break
    return codename, mirror


def cache_dir() -> Path:
    path = project_root() / ".cache" / "docker"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def base_rootfs(codename: str, mirror: str, log) -> Path:
    """A tarball of a minimal Debian root file system, bootstrapped once per release."""
    tarball = cache_dir() / f"debian-{codename}-minbase-{_digest(*BASE_PACKAGES)}.tar"
    if tarball.exists():
        return tarball
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        raise StackError("docker: debootstrap is not installed; run `make setup` (apt-get install debootstrap)")
    with tempfile.TemporaryDirectory(prefix="ferry-rootfs-", dir=cache_dir()) as tmp:
        rootfs = Path(tmp) / "rootfs"
        result = subprocess.run([debootstrap, "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                                 codename, str(rootfs), mirror], stdout=log, stderr=subprocess.STDOUT)
        if result.returncode:
            raise StackError(f"docker: debootstrap of Debian {codename} from {mirror} failed — log: {log.name}")
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):  # downloads, not needed in the image
            for entry in (rootfs / cache).glob("*"):
                if entry.is_file():
                    entry.unlink()
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."], check=True)
        partial.rename(tarball)
    return tarball


def python_version_in(tarball: Path) -> str:
    """The ``X.Y`` of the python3 the base image has (its ``usr/lib/python3.Y`` directory)."""
    with tarfile.open(tarball) as tar:
        for name in tar.getnames():
            if found := re.fullmatch(r"\./usr/lib/python(3\.\d+)", name):
                return found.group(1)
    raise StackError(f"docker: no python3 in {tarball}")


def ensure_base(client, log) -> tuple[str, str]:
    """The base image's tag and its Python version; imported from the cached tarball if missing."""
    codename, mirror = debian_release()
    tag = f"ferry/debian:{codename}"
    tarball = base_rootfs(codename, mirror, log)
    inputs = _digest(tarball.name, str(tarball.stat().st_size))
    python = python_version_in(tarball)
    if not _has_image(client, tag, inputs):
        log.write(f"importing {tarball} as {tag}\n".encode())
        log.flush()
        # From the file, with its length (the stream variant sends a chunked body dockerd 20.10 rejects).
        client.api.import_image_from_file(
            str(tarball), repository="ferry/debian", tag=codename,
            changes=[f'LABEL {INPUTS_LABEL}="{inputs}" org.ferry.python="{python}"', 'CMD ["/bin/bash"]'])
    return tag, python


def _has_image(client, tag: str, inputs: str) -> bool:
    import docker

    try:
        return client.images.get(tag).labels.get(INPUTS_LABEL) == inputs
    except docker.errors.ImageNotFound:
        return False


def _cruncher_context(tmp: Path, python: str) -> None:
    """Fill the build context: the Dockerfile, the packages, the cruncher's modules."""
    requirements = [f"{name}=={metadata.version(name)}" for name in CRUNCHER_PACKAGES]
    uv = Path(sys.executable).with_name("uv")  # the venv's (a dependency), else one on PATH
    uv_command = str(uv) if uv.exists() else shutil.which("uv") or "uv"
    subprocess.run([uv_command, "pip", "install", "--quiet", "--target", str(tmp / "site-packages"),
                    "--python-version", python, "--python-platform", "x86_64-manylinux_2_28", "--only-binary", ":all:",
                    *requirements], check=True, capture_output=True)
    source = project_root() / "src"
    for module in CRUNCHER_MODULES:
        (tmp / "app" / module).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / module, tmp / "app" / module)
    shutil.copyfile(project_root() / "docker" / "numbercruncher.Dockerfile", tmp / "Dockerfile")


def ensure_cruncher(client, base: str, python: str, log) -> None:
    source = project_root() / "src"
    inputs = _digest(base, client.images.get(base).id, python,
                     (project_root() / "docker" / "numbercruncher.Dockerfile").read_bytes(),
                     *[f"{n}=={metadata.version(n)}" for n in CRUNCHER_PACKAGES],
                     *[(source / m).read_bytes() for m in CRUNCHER_MODULES])
    if _has_image(client, CRUNCHER_IMAGE, inputs):
        return
    log.write(f"building {CRUNCHER_IMAGE} on {base}\n".encode())
    log.flush()
    with tempfile.TemporaryDirectory(prefix="ferry-build-") as tmp:
        try:
            _cruncher_context(Path(tmp), python)
        except subprocess.CalledProcessError as exc:
            detail = exc.stderr.decode()[-500:]
            raise StackError(f"docker: installing the cruncher's packages failed: {detail}") from exc
        try:
            client.images.build(path=tmp, tag=CRUNCHER_IMAGE, buildargs={"BASE": base}, labels={INPUTS_LABEL: inputs},
                                rm=True, forcerm=True)
        except Exception as exc:  # BuildError, APIError: say so in one line, the details in the log
            log.write(f"{exc!r}\n".encode())
            raise StackError(f"docker: building {CRUNCHER_IMAGE} failed: {exc} — log: {log.name}") from exc


def ensure_images(url: str, *, log_file: Path) -> None:
    """Build what is missing or stale; quick when everything is current."""
    import docker

    client = docker.DockerClient(base_url=url, timeout=600)
    try:
        with open(log_file, "ab") as log:
            base, python = ensure_base(client, log)
            ensure_cruncher(client, base, python, log)
    finally:
        client.close()

