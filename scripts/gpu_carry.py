"""What scripts/gpu_check.sh needs on a lent GPU machine that has no network, gathered
here into .gpu-carry/ (ignored by git; the device tool's `carry` takes it along), and
the check that it and the working tree fit the tool's 64 MiB.

- llama-cpp-python-src.tar.gz: the llama-cpp-python 0.3.36 sources, trimmed to what a
  CUDA build of the binding needs (its CMake project, llama.cpp's src/, common/,
  vendor/, ggml with the CPU and CUDA backends) and the GGUF converter. The sdist is
  76.6 MB and 217 MB unpacked: over the limit alone. Left out: llama.cpp's models/
  (75 MB of vocabularies for its tests), docs/, tools/, examples/, tests/ and every
  other ggml backend.
- wheels/: pure-Python packages the GPU image lacks (its list: KINDS.md beside the
  device tool's notes): diskcache (llama_cpp imports it), exllamav2 (its CUDA kernels
  compile there on first import), and fastparquet with cramjam (exllamav2's converter
  imports them) as CPython 3.12 manylinux wheels.
- tokenizer/: SmolLM2's tokenizer files, for the tiny model made there.

    python scripts/gpu_carry.py prepare [--dest .gpu-carry]
    python scripts/gpu_carry.py size [--dest .gpu-carry]     (exit 1 when over the limit)
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.gpu_tiny_model import export_tokenizer  # noqa: E402

LIMIT = 64 << 20  # the device tool's limit on what travels: working tree + carried paths
LLAMA_CPP_VERSION = "0.3.36"  # scripts/setup.sh's pin
SOURCE_TARBALL = "llama-cpp-python-src.tar.gz"
# Top-level entries of vendor/llama.cpp that neither the binding's build nor the
# converter reads (LLAMA_BUILD_TESTS/TOOLS/EXAMPLES are off when it is a subproject,
# and gpu_check.sh turns LLAVA_BUILD, which wants tools/mtmd, off).
LLAMA_CPP_UNUSED = {".git", "models", "docs", "media", ".github", ".devops", "benches", "tests", "examples", "pocs",
                    "app", "tools", "scripts", "ci", "skills", "grammars", "requirements", "licenses-extra"}
GGML_BACKENDS_KEPT = {"ggml-cpu", "ggml-cuda"}
# Binding-level entries not needed to build or import it.
BINDING_UNUSED = {".git", ".github", "docs", "docker", "examples", "tests", "scripts", "mkdocs.yml", "CHANGELOG.md"}
WHEELS = ("diskcache==5.6.3", "exllamav2==0.3.2")
BINARY_WHEELS = ("fastparquet==2024.11.0", "cramjam==2.11.0")  # CPython 3.12, manylinux x86-64
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def keep(relative: Path) -> bool:
    """Whether a path of the unpacked llama-cpp-python sources goes into the tarball."""
    parts = relative.parts
    if not parts:
        return True  # the top folder itself
    if parts[0] in BINDING_UNUSED or "__pycache__" in parts:
        return False
    if parts[0] == "llama_cpp" and len(parts) > 1 and parts[1] == "lib":
        return False  # a build's output, if a build ever ran in this folder
    if parts[:2] == ("vendor", "llama.cpp") and len(parts) > 2:
        if parts[2] in LLAMA_CPP_UNUSED:
            return False
        backend = parts[4] if parts[2:4] == ("ggml", "src") and len(parts) > 4 else ""
        # ggml/src/ggml-<backend>/ folders (files such as ggml-alloc.c have a suffix)
        if backend.startswith("ggml-") and "." not in backend and backend not in GGML_BACKENDS_KEPT:
            return False
    return True


def write_source_tarball(source: Path, out: Path) -> Path:
    base = source.name
    tmp = out.with_name(out.name + ".partial")
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        tar.add(source, arcname=base, filter=lambda info: info if keep(Path(*Path(info.name).parts[1:])) else None)
    tmp.rename(out)
    return out


def llama_cpp_source() -> Path:
    """The unpacked sources, through scripts/setup.sh (downloads once, then cached)."""
    out = subprocess.run(["bash", "-c", f'source "{ROOT}/scripts/setup.sh"; ensure_llama_cpp_source'],
                         check=True, capture_output=True, text=True, env={**os.environ, "VENV": str(ROOT / ".venv")})
    return Path(out.stdout.strip().splitlines()[-1])


def download_wheels(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(dest)]
    subprocess.run([*pip, "--only-binary=:all:", *WHEELS], check=True)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([*pip, "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                    *platforms, *BINARY_WHEELS], check=True)


def tree_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())


def travelling_size(repo: Path = ROOT) -> int:
    """Bytes of the working tree the device tool sends: tracked files and untracked
    files that git does not ignore."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                           check=True, capture_output=True).stdout.split(b"\0")
    total = 0
    for name in filter(None, names):
        path = repo / os.fsdecode(name)
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


def size_report(carried: list[Path], repo: Path = ROOT, limit: int = LIMIT) -> tuple[bool, str]:
    """(fits, one line): the working tree plus the carried paths against the limit."""
    tree = travelling_size(repo)
    carry = sum(tree_size(p) if p.is_dir() else p.stat().st_size for p in carried if p.exists())
    total = tree + carry
    mib = 1 << 20
    line = (f"working tree {tree / mib:.1f} MiB + carried {carry / mib:.1f} MiB = {total / mib:.1f} MiB "
            f"of {limit / mib:.0f} MiB")
    return total <= limit, line


def prepare(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    source = llama_cpp_source()
    print(f"trimming {source} into {dest / SOURCE_TARBALL}", flush=True)
    write_source_tarball(source, dest / SOURCE_TARBALL)
    shutil.rmtree(dest / "wheels", ignore_errors=True)
    download_wheels(dest / "wheels")
    shutil.rmtree(dest / "tokenizer", ignore_errors=True)
    export_tokenizer(dest / "tokenizer")
    for path in sorted(dest.rglob("*")):
        if path.is_file():
            print(f"  {path.stat().st_size / (1 << 20):7.2f} MiB  {path.relative_to(dest)}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("prepare", "size"))
    parser.add_argument("--dest", type=Path, default=ROOT / ".gpu-carry")
    args = parser.parse_args(argv)
    if args.what == "prepare":
        prepare(args.dest)
    fits, line = size_report([args.dest])
    print(("fits: " if fits else "TOO LARGE: ") + line)
    return 0 if fits else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
