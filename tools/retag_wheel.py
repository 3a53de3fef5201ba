"""Copy a wheel with a new tag and corrected requirements, keeping it a valid wheel.

tools/setup_env.sh runs it on the sal-detectron2 wheel. That wheel is tagged cp310 although
its Python code runs on any Python 3 (its compiled _C never loads here), and its METADATA
pins numpy<2 and requires black, which Detectron2 imports only in LazyConfig.to_py, a
function neither Detectron2 nor rgs_detectron calls. Installed unchanged, it makes
`pip check` fail and every later `pip install` in the environment complain. The copy says
what is true instead: tag py3-none-any, no numpy cap, no black. RECORD gets the new hashes
of the files that changed, so installers accept the copy like the original.

    python tools/retag_wheel.py IN.whl OUT_DIR [--drop NAME]... [--unpin NAME]...

writes OUT_DIR/<name>-<version>-py3-none-any.whl and prints its path. A --drop or --unpin
that matches no requirement is an error: the wheel is then not the one this was written for.
Standard library only, so it runs with any interpreter the set-up installs into.
"""
import argparse
import base64
import csv
import hashlib
import io
import os
import re
import sys
import tempfile
import zipfile

from env_plan import normalize  # tools/ is this script's folder, first on sys.path

TAG = "py3-none-any"
# "Requires-Dist: name[extras] specifier ; marker" (old-style "name (specifier)" too)
REQUIREMENT = re.compile(r"^Requires-Dist:\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?$")


def rewrite_metadata(text, drop, unpin):
    """METADATA with unconditional requirements on `drop` removed and the version limits of
    `unpin` lifted. Requirements of extras (`extra == ...` markers) are left as they are."""
    found, lines = set(), []
    for line in text.splitlines(keepends=True):
        m = REQUIREMENT.match(line.rstrip("\r\n"))
        if m and "extra" not in (m.group(4) or ""):
            name = normalize(m.group(1))
            if name in drop:
                found.add(name)
                continue
            if name in unpin:
                found.add(name)
                marker = (m.group(4) or "").lstrip(";").strip()
                line = f"Requires-Dist: {m.group(1)}{m.group(2) or ''}{'; ' + marker if marker else ''}\n"
        lines.append(line)
    missing = (drop | unpin) - found
    if missing:
        raise ValueError(f"METADATA has no requirement on {', '.join(sorted(missing))}")
    return "".join(lines)


def rewrite_wheel_file(text):
    """WHEEL with its Tag lines replaced by the one tag of the new file name."""
    lines = [line for line in text.splitlines(keepends=True) if not line.startswith("Tag:")]
    return "".join(lines).rstrip("\n") + f"\nTag: {TAG}\n"


def record_hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def retag(src, out_dir, drop=(), unpin=()):
    """Write the corrected copy of wheel `src` into `out_dir`; return its path."""
    parts = os.path.basename(src)[:-len(".whl")].split("-")
    if not src.endswith(".whl") or len(parts) not in (5, 6):
        raise ValueError(f"{src} is not named like a wheel (name-version-python-abi-platform.whl)")
    dest = os.path.join(out_dir, "-".join(parts[:-3] + [TAG]) + ".whl")
    dist_info = f"{parts[0]}-{parts[1]}.dist-info/"
    drop, unpin = {normalize(n) for n in drop}, {normalize(n) for n in unpin}
    with zipfile.ZipFile(src) as zin:
        members = zin.infolist()
        names = {i.filename for i in members}
        for needed in ("METADATA", "WHEEL", "RECORD"):
            if dist_info + needed not in names:
                raise ValueError(f"{src} has no {dist_info}{needed}")
        changed = {
            dist_info + "METADATA": rewrite_metadata(zin.read(dist_info + "METADATA").decode(), drop, unpin).encode(),
            dist_info + "WHEEL": rewrite_wheel_file(zin.read(dist_info + "WHEEL").decode()).encode(),
        }
        rows = list(csv.reader(io.StringIO(zin.read(dist_info + "RECORD").decode())))
        for row in rows:
            if row and row[0] in changed:
                row[1:3] = [record_hash(changed[row[0]]), str(len(changed[row[0]]))]
        record = io.StringIO()
        csv.writer(record, lineterminator="\n").writerows(rows)
        changed[dist_info + "RECORD"] = record.getvalue().encode()
        os.makedirs(out_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zout:
                for info in members:
                    zout.writestr(info, changed[info.filename] if info.filename in changed else zin.read(info))
            os.replace(tmp, dest)
        except BaseException:
            os.unlink(tmp)
            raise
    return dest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel")
    parser.add_argument("out_dir")
    parser.add_argument("--drop", action="append", default=[], metavar="NAME", help="remove this requirement")
    parser.add_argument("--unpin", action="append", default=[], metavar="NAME", help="lift this requirement's limits")
    args = parser.parse_args(argv)
    try:
        print(retag(args.wheel, args.out_dir, args.drop, args.unpin))
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        sys.exit(f"retag_wheel: {args.wheel}: {e}")


if __name__ == "__main__":
    main()
