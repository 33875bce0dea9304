"""Generates the hookplane Python modules from proto/ alone.

Usage: python generate.py [OUT_DIR]

OUT_DIR defaults to this package's src/, so the generated `hookplane/v1/`
modules sit beside `hookplane_sdk/` and are packaged with it. Everything under
OUT_DIR/hookplane/ is generated: it is git-ignored and rewritten on each run,
so the modules never lag behind the protos.

Needs the `generate` extra (grpcio-tools, mypy-protobuf).
"""

from __future__ import annotations

import pathlib
import shutil
import sys
import sysconfig

import grpc_tools
from grpc_tools import protoc

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PROTO = ROOT / "proto"

# Only files protoc (and this script) write are removed before generating: a
# proto that was deleted or renamed must not leave an importable module behind,
# and nothing else an OUT_DIR might hold is touched.
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def _plugin(name: str) -> str:
    """The path of a protoc plugin script installed beside this Python.

    protoc runs plugins as executables, so the script of the active
    environment is named explicitly rather than trusting whatever PATH holds.
    """
    candidates = [pathlib.Path(sysconfig.get_path("scripts")), pathlib.Path(sys.executable).parent]
    for directory in candidates:
        for file_name in (name, f"{name}.exe"):
            path = directory / file_name
            if path.is_file():
                return str(path)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found: install the generate extra (pip install 'hookplane[generate]')")
    return found


def _clean(out_dir: pathlib.Path) -> None:
    generated = out_dir / "hookplane"
    if not generated.is_dir():
        return
    for path in generated.rglob("*"):
        if path.is_file() and (path.name.endswith(GENERATED_SUFFIXES) or path.name == "py.typed"):
            path.unlink()


def generate(out_dir: pathlib.Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    _clean(out_dir)
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    args = [
        "protoc",
        f"-I{PROTO}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        # Typed stubs for messages and service stubs; `quiet` keeps the
        # plugin from printing a line per file into every test log.
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--mypy_out=quiet:{out_dir}",
        f"--mypy_grpc_out=quiet:{out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # PEP 561: type checkers read installed stubs only from packages marked
    # typed. `hookplane` and `hookplane.v1` stay namespace packages (no
    # __init__.py), as the generated absolute imports expect.
    for package in {p.parent for p in (out_dir / "hookplane").rglob("*_pb2.py")} | {out_dir / "hookplane"}:
        (package / "py.typed").write_text("")


if __name__ == "__main__":
    if len(sys.argv) > 2:
        raise SystemExit(__doc__)
    generate(pathlib.Path(sys.argv[1]) if len(sys.argv) == 2 else HERE / "src")
