"""Installs the built-in corpora: ``python -m dvae.data.install [asterisk] [mocap] [--dir DIR]``.

- ``asterisk``: the Debian packages asterisk-core-sounds-{en,es,fr,it,ru}-g722 (into
  /usr/share/asterisk/sounds), with apt-get when running as root on a system that has
  it; otherwise the command to run is printed.
- ``mocap``: the climbing capture inside the PyPI wheel holosoma-retargeting==0.1.0
  (Apache-2.0, 102 MB download): the wheel is fetched with ``pip download --no-deps``
  into a temporary folder, checked against its SHA-256, and only its
  ``holosoma_retargeting/demo_data/climb/`` folder is unpacked, to
  ``DIR/mocap_climb`` (DIR: --dir, else $DVAE_DATA, else ~/.cache/dvae-tune/data).

With no corpus named, both are installed. Installing is idempotent: what is already
there is left alone. The exit status is 0 when everything asked for is in place.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Optional

from .corpora import ASTERISK_ROOT, MOCAP_FOLDER, data_dir

ASTERISK_PACKAGES = [f"asterisk-core-sounds-{lang}-g722" for lang in ("en", "es", "fr", "it", "ru")]
ASTERISK_COMMAND = ["apt-get", "install", "-y", "--no-install-recommends", *ASTERISK_PACKAGES]
MOCAP_WHEEL = "holosoma-retargeting==0.1.0"
MOCAP_WHEEL_SHA256 = "3dcdcc06c6705c091478808024298dfcc684d9eb49e890cc6b11fc03fa246cb4"
MOCAP_PREFIX = "holosoma_retargeting/demo_data/climb/"
MOCAP_SEQUENCES = 5


def install_asterisk() -> bool:
    """Installs the Asterisk prompt packages if missing; True when they are installed."""
    if _asterisk_installed():
        print(f"asterisk: already installed in {ASTERISK_ROOT}")
        return True
    command = "apt-get update && " + " ".join(ASTERISK_COMMAND)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"asterisk: not installed; on Debian or Ubuntu run as root:\n  {command}")
        return False
    print(f"asterisk: running {command}")
    for step in (["apt-get", "update"], ASTERISK_COMMAND):
        if subprocess.run(step).returncode != 0:
            print(f"asterisk: `{' '.join(step)}` failed", file=sys.stderr)
            return False
    return _asterisk_installed()


def _asterisk_installed() -> bool:
    if shutil.which("dpkg-query") is None:
        return False
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}\n", *ASTERISK_PACKAGES],
                            capture_output=True, text=True)
    lines = status.stdout.splitlines()
    return len(lines) == len(ASTERISK_PACKAGES) and all(line.endswith(" installed") for line in lines)


def install_mocap(directory: Optional[Path] = None) -> Path:
    """Unpacks the climbing capture to DIR/mocap_climb if it is not there; returns that folder.

    Raises RuntimeError when the wheel cannot be downloaded or is not the expected one.
    """
    target = Path(directory or data_dir()) / MOCAP_FOLDER
    if len(list(target.glob("mocap_climb_seq_*/*_joint_positions_*.npy"))) == MOCAP_SEQUENCES:
        print(f"mocap: already installed in {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", MOCAP_WHEEL, "-d", tmp]
        print(f"mocap: downloading {MOCAP_WHEEL} (about 100 MB)")
        if subprocess.run(command).returncode != 0:
            raise RuntimeError(f"could not download the wheel; run `{' '.join(command[:-2])} -d DIR` and "
                               f"unzip {MOCAP_PREFIX} from it into {target}")
        wheel = next(Path(tmp).glob("*.whl"))
        digest = _sha256(wheel)
        if digest != MOCAP_WHEEL_SHA256:
            raise RuntimeError(f"{wheel.name} has SHA-256 {digest}, expected {MOCAP_WHEEL_SHA256}")
        unpacked = Path(tmp) / MOCAP_FOLDER
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.infolist():
                if member.filename.startswith(MOCAP_PREFIX) and not member.is_dir():
                    destination = unpacked / member.filename[len(MOCAP_PREFIX):]
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    destination.write_bytes(archive.read(member))
        shutil.rmtree(target, ignore_errors=True)  # a partial earlier attempt
        os.rename(unpacked, target)  # all at once: a reader never sees half the files
    print(f"mocap: installed in {target}")
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dvae.data.install", description=__doc__.split("\n\n")[0])
    parser.add_argument("corpora", nargs="*", metavar="{asterisk,mocap}", help="what to install (default: both)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="data folder for mocap (default: $DVAE_DATA or ~/.cache/dvae-tune/data)")
    args = parser.parse_args(argv)
    unknown = set(args.corpora) - {"asterisk", "mocap"}
    if unknown:
        parser.error(f"unknown corpus {', '.join(sorted(unknown))}; choose asterisk or mocap")
    wanted = args.corpora or ["asterisk", "mocap"]
    ok = True
    if "asterisk" in wanted:
        ok = install_asterisk() and ok
    if "mocap" in wanted:
        try:
            install_mocap(args.dir)
        except RuntimeError as error:
            print(f"mocap: {error}", file=sys.stderr)
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
