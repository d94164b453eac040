"""The steps of scripts/gpu_check.sh (read that first): each a subprocess with its own
time limit inside one overall budget, none aborting the rest, then a summary table.

On the GPU: install the carried wheels, unpack the carried llama.cpp sources, build
llama-cpp-python with CUDA and exllamav2's CUDA extension in the background while the
tiny model is made and Transformers runs the loader contract on the GPU, then the
contract and tokens/s (Hearth vs the raw library) for each backend.

--dry-run: the same steps on the CPU, with the venv's llama-cpp-python and no builds,
so that this logic is exercised where there is no GPU.

    python scripts/gpu_check.py [--dry-run] [--budget SECONDS] [--work DIR] [--carry DIR]
"""
from __future__ import annotations

import argparse
import glob
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.gpu_carry import LLAMA_CPP_VERSION, SOURCE_TARBALL, llama_cpp_source  # noqa: E402

# The device tool stops a command after 600 s; the budget leaves room for Python's
# start and for copying the results out.
DEFAULT_BUDGET = 560
RESERVE = 5  # seconds kept back for the summary
CUDA_ARCH = "90"  # the H200 (Hopper, compute capability 9.0): one architecture builds fastest
# Flash attention's CUDA kernels are off: Hearth's flash_attn option is off by default,
# and they are most of ggml-cuda's compile time. HEARTH_GPU_CMAKE_ARGS adds or overrides.
LLAMA_CMAKE_ARGS = (f"-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES={CUDA_ARCH} -DGGML_CUDA_FA=OFF -DLLAVA_BUILD=OFF "
                    "-DLLAMA_OPENSSL=OFF -DGGML_CUDA_NCCL=OFF")
# Compile jobs: exllamav2's extension gets 3, llama.cpp the rest but 2, which the
# Transformers steps running meanwhile need (on 16 cores: 11 + 3 + 2).
EXL2_JOBS = 3
CONTRACT = "tests/integration/test_loader_contract.py"
# scripts/gpu_llama_probe.py: a few child loads of 2-5 s each, more under gdb.
PROBE_LIMIT = 150
LOG_TAIL = 15


@dataclass
class Result:
    step: str
    status: str  # ok / failed / skipped
    seconds: float
    details: str


class Background:
    def __init__(self, name: str, proc: subprocess.Popen, log: Path, started: float, limit: float):
        self.name, self.proc, self.log, self.started, self.limit = name, proc, log, started, limit


class Steps:
    def __init__(self, work: Path, budget: float, env: dict[str, str]):
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.deadline = time.monotonic() + budget
        self.env = env
        self.results: list[Result] = []

    def left(self) -> float:
        return self.deadline - time.monotonic() - RESERVE

    def record(self, step: str, status: str, seconds: float, details: str) -> bool:
        self.results.append(Result(step, status, round(seconds, 1), details))
        print(f"[gpu-check] {step}: {status} ({seconds:.1f} s) {details}", flush=True)
        return status == "ok"

    def skip(self, step: str, reason: str) -> bool:
        self.record(step, "skipped", 0.0, reason)
        return False

    def _popen(self, name: str, argv: list[str], env: dict[str, str] | None) -> tuple[subprocess.Popen, Path]:
        log = self.logs / f"{name}.log"
        print(f"[gpu-check] {name}: {' '.join(argv)}", flush=True)
        with open(log, "w") as out:
            # A session of its own, so a timeout kills the whole tree (pip -> cmake -> nvcc).
            proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**self.env, **(env or {})})
        return proc, log

    def start(self, name: str, argv: list[str], limit: float, env: dict[str, str] | None = None) -> Background | None:
        if self.left() < 10:
            self.skip(name, "no time left in the budget")
            return None
        proc, log = self._popen(name, argv, env)
        return Background(name, proc, log, time.monotonic(), limit)

    def finish(self, job: Background, summary=None) -> bool:
        """Waits for a job within its own limit and the budget; records the result."""
        wait = min(job.limit - (time.monotonic() - job.started), self.left())
        try:
            rc = job.proc.wait(timeout=max(wait, 0.1))
        except subprocess.TimeoutExpired:
            _kill(job.proc)
            elapsed = time.monotonic() - job.started
            self._show_tail(job.log)
            return self.record(job.name, "failed", elapsed, f"timed out after {elapsed:.0f} s (log: {job.log.name})")
        elapsed = time.monotonic() - job.started
        if rc != 0:
            self._show_tail(job.log)
            return self.record(job.name, "failed", elapsed, f"exit {rc}: {_last_line(job.log)}")
        details = summary(job.log) if summary else ""
        return self.record(job.name, "ok", elapsed, details)

    def run(self, name: str, argv: list[str], limit: float, env: dict[str, str] | None = None, summary=None) -> bool:
        job = self.start(name, argv, limit, env)
        return self.finish(job, summary) if job else False

    def _show_tail(self, log: Path) -> None:
        lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL:]
        print("\n".join(f"    | {line}" for line in lines), flush=True)

    def table(self) -> str:
        rows = [("step", "status", "seconds", "details")]
        rows += [(r.step, r.status, f"{r.seconds:.1f}", r.details) for r in self.results]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}  {d}".rstrip() for a, b, c, d in rows)


def _kill(proc: subprocess.Popen) -> None:
    """The step's whole tree: its session, and every descendant, since ninja starts each
    compiler in a process group of its own (seen here: a killed build's cc1 ran on)."""
    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for child in tree:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait()


def _last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:200] if lines else "(no output)"


def pytest_summary(log: Path) -> str:
    """pytest's last line: '30 passed in 12.3s'."""
    return _last_line(log).strip("= ")


def speed_summary(path: Path):
    def read(_log: Path) -> str:
        rows = json.loads(path.read_text())
        return "; ".join(f"{r['backend']}: Hearth {r['hearth_tok_s']} tok/s, raw {r['raw_tok_s']} tok/s, "
                         f"x{r['ratio']}" for r in rows)
    return read


def probe_summary(path: Path):
    def read(_log: Path) -> str:
        return json.loads(path.read_text())["verdict"] if path.is_file() else "(no result)"
    return read


def cuda_home() -> Path | None:
    """The CUDA toolkit's folder. Not from `which nvcc`, which PyTorch's extension
    builder uses: on these images /usr/local/bin/nvcc is a wrapper script, which would
    make that /usr/local."""
    for candidate in [os.environ.get("CUDA_HOME"), "/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"))[::-1]]:
        if candidate and (Path(candidate) / "bin" / "nvcc").exists():
            return Path(candidate)
    return None


def pip_cublas(python: str, home: Path | None) -> Path | None:
    """Where cuBLAS lies when the toolkit has no cublas_v2.h: on an image whose CUDA
    toolkit was assembled from NVIDIA's pip wheels (as this workplace's are), in
    PyTorch's site-packages (nvidia/cu13/{include,lib})."""
    if home is not None and (home / "include" / "cublas_v2.h").exists():
        return None
    sites = subprocess.run([python, "-c", "import site; print('\\n'.join(site.getsitepackages()))"],
                           capture_output=True, text=True).stdout.split()
    for site in sites:
        for header in sorted(glob.glob(f"{site}/nvidia/*/include/cublas_v2.h")):
            root = Path(header).parent.parent
            if glob.glob(f"{root}/lib/libcublas.so*") and glob.glob(f"{root}/lib/libcublasLt.so*"):
                return root
    return None


def cuda_cmake_args(home: Path | None, cublas: Path | None) -> list[str]:
    """What CMake cannot find by itself there: a pip-wheel cuBLAS, and the driver's
    libcuda.so.1, which has no unversioned link (seen here: CMake stops with "Target
    ggml-cuda links to CUDA::cublas / CUDA::cuda_driver but the target was not found")."""
    args = [f"-DCMAKE_CUDA_COMPILER={home / 'bin' / 'nvcc'}"] if home else []
    if cublas is not None:
        lib = {name: sorted(glob.glob(f"{cublas}/lib/lib{name}.so*"))[0] for name in ("cublas", "cublasLt")}
        args += [f"-DCUDA_cublas_LIBRARY={lib['cublas']}", f"-DCUDA_cublasLt_LIBRARY={lib['cublasLt']}",
                 f"-DCMAKE_CUDA_FLAGS=-I{cublas / 'include'}"]
    drivers = sorted(glob.glob("/usr/local/nvidia/lib64/libcuda.so*") + glob.glob("/usr/lib/x86_64-linux-gnu/libcuda.so*")
                     + glob.glob("/usr/lib64/libcuda.so*"))
    if drivers:
        args.append(f"-DCUDA_cuda_driver_LIBRARY={drivers[0]}")
    elif not (home and (home / "lib64" / "stubs" / "libcuda.so").exists()):
        args.append("-DGGML_CUDA_NO_VMM=ON")  # then ggml-cuda does not link the driver directly
    return args


def _cpu_has_amx() -> bool:
    try:
        return any(line.startswith("flags") and " amx_int8" in line
                   for line in Path("/proc/cpuinfo").read_text().splitlines())
    except OSError:
        return False


def environment(steps: Steps, dry_run: bool) -> None:
    start = time.monotonic()
    versions = []
    for dist in ("torch", "transformers", "llama_cpp_python", "exllamav2"):
        try:
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{dist} -")
    gpu = "none (dry run)" if dry_run else "nvidia-smi not found"
    if not dry_run and shutil.which("nvidia-smi"):
        query = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True)
        gpu = query.stdout.strip() or query.stderr.strip()
    steps.record("environment", "ok", time.monotonic() - start,
                 f"{os.cpu_count()} CPUs; GPU: {gpu}; {', '.join(versions)}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU only, no builds: exercises the steps here")
    parser.add_argument("--budget", type=float, default=float(os.environ.get("HEARTH_GPU_CHECK_BUDGET", DEFAULT_BUDGET)))
    parser.add_argument("--work", type=Path, help="scratch folder (default: a new one under /tmp)")
    parser.add_argument("--carry", type=Path, default=ROOT / ".gpu-carry")
    parser.add_argument("--tokens", type=int, help="tokens per speed round (default 256; 8 in a dry run)")
    parser.add_argument("--rounds", type=int, help="speed rounds per side (default 5; 1 in a dry run)")
    args = parser.parse_args(argv)
    dry = args.dry_run
    device = "cpu" if dry else "cuda"
    tokens = args.tokens or (8 if dry else 256)
    rounds = args.rounds or (1 if dry else 5)
    work = args.work or Path(tempfile.mkdtemp(prefix="hearth-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    site = work / "site"
    py = sys.executable
    cores = os.cpu_count() or 2
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(site), str(ROOT), os.environ.get("PYTHONPATH")])),
           "HEARTH_USER_DATA": str(work / "user_data"), "HEARTH_CONTRACT_DEVICE": device}
    steps = Steps(work, args.budget, env)
    print(f"[gpu-check] {'dry run on the CPU' if dry else 'CUDA run'}; work folder {work}; "
          f"budget {args.budget:.0f} s", flush=True)

    environment(steps, dry)

    # Carried wheels: diskcache for llama_cpp; exllamav2 and its converter's needs.
    wheels = sorted(glob.glob(str(args.carry / "wheels" / "*.whl")))
    if dry:
        steps.skip("wheels", "dry run: the venv's packages")
    elif not wheels:
        steps.skip("wheels", f"none in {args.carry / 'wheels'} (run scripts/gpu_check.sh --prepare here)")
    else:
        steps.run("wheels", [py, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                             "--no-cache-dir", "--target", str(site), *wheels], 90)

    # llama-cpp-python's sources: the CUDA build, and llama.cpp's GGUF converter.
    start = time.monotonic()
    tarball = args.carry / SOURCE_TARBALL
    source = None
    try:
        if dry:
            source = llama_cpp_source()
        elif tarball.is_file():
            with tarfile.open(tarball) as tar:
                tar.extractall(work / "src", filter="data")
            source = work / "src" / f"llama_cpp_python-{LLAMA_CPP_VERSION}"
        if source is None:
            steps.skip("sources", f"{tarball} is missing (run scripts/gpu_check.sh --prepare here)")
        else:
            steps.record("sources", "ok", time.monotonic() - start, str(source))
    except (OSError, tarfile.TarError, subprocess.CalledProcessError) as e:
        steps.record("sources", "failed", time.monotonic() - start, f"{type(e).__name__}: {e}")
        source = None

    # The two CUDA builds run in the background while the model is made and Transformers is checked.
    llama_build = exl2_build = None
    home = cublas = None
    if not dry:
        home = cuda_home()
        cublas = pip_cublas(py, home)
        if home:
            env["CUDA_HOME"] = str(home)
            env["PATH"] = f"{home / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        if cublas:
            env["CPATH"] = os.pathsep.join(filter(None, [str(cublas / "include"), env.get("CPATH")]))
            # The CUDA build of libggml-cuda links this cuBLAS; found at run time without PyTorch loading it first.
            env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(cublas / "lib"), env.get("LD_LIBRARY_PATH")]))
        print(f"[gpu-check] CUDA toolkit {home}; cuBLAS from {cublas or 'the toolkit'}", flush=True)
    if dry:
        steps.skip("build-llama.cpp", "dry run: the venv's llama-cpp-python (CPU)")
        steps.skip("build-exllamav2", "dry run: exllamav2 needs CUDA")
    else:
        if source is None:
            steps.skip("build-llama.cpp", "no sources")
        else:
            cmake_args = " ".join([LLAMA_CMAKE_ARGS, *cuda_cmake_args(home, cublas),
                                   os.environ.get("HEARTH_GPU_CMAKE_ARGS", "")])
            print(f"[gpu-check] CMAKE_ARGS={cmake_args}", flush=True)
            # As scripts/setup.sh: a native build's AMX kernels crash the first CPU decode.
            no_amx = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" if _cpu_has_amx() else ""
            llama_build = steps.start("build-llama.cpp", [
                py, "-m", "pip", "install", "-v", "--no-index", "--no-deps", "--no-build-isolation", "--no-cache-dir",
                "--target", str(site / "llama"), str(source)], 420,
                env={"CMAKE_ARGS": cmake_args, "CMAKE_GENERATOR": "Ninja",
                     "CFLAGS": f"{os.environ.get('CFLAGS', '')} {no_amx}".strip(),
                     "CXXFLAGS": f"{os.environ.get('CXXFLAGS', '')} {no_amx}".strip(),
                     "CMAKE_BUILD_PARALLEL_LEVEL": str(max(1, cores - 2 - EXL2_JOBS))})
        if (site / "exllamav2").is_dir():
            exl2_build = steps.start("build-exllamav2", [py, "-c", "import exllamav2.ext"], 420, env={
                "TORCH_CUDA_ARCH_LIST": "9.0", "MAX_JOBS": str(EXL2_JOBS), "TORCH_EXTENSIONS_DIR": str(work / "torch_extensions")})
        else:
            steps.skip("build-exllamav2", "no exllamav2 wheel was carried")

    # The tiny model, as a Transformers folder and as a GGUF.
    tokenizer = args.carry / "tokenizer"
    if not (tokenizer / "tokenizer.json").is_file():
        tokenizer = work / "tokenizer"
        steps.run("tokenizer", [py, "scripts/gpu_tiny_model.py", "tokenizer", str(tokenizer)], 60)
    hf = work / "tiny-hf"
    gguf = work / "tiny-f16.gguf"
    have_hf = steps.run("tiny-model", [py, "scripts/gpu_tiny_model.py", "hf", str(hf), "--tokenizer", str(tokenizer)],
                        60)
    # The GGUF conversion (a torch import and a tokenizer load) overlaps the Transformers steps.
    gguf_job = None
    if have_hf and source is not None:
        gguf_job = steps.start("gguf", [py, "scripts/gpu_tiny_model.py", "gguf", str(hf), str(gguf),
                                        "--llama-src", str(source)], 120)
    else:
        steps.skip("gguf", "no tiny model or no llama.cpp sources")

    def contract(name: str, cases: str, extra: dict[str, str]) -> None:
        steps.run(name, [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", CONTRACT],
                  240, env={"HEARTH_CONTRACT_CASES": cases, **extra}, summary=pytest_summary)

    def speed(name: str, backends: list[str], model: Path, extra: dict[str, str] | None = None) -> None:
        out = work / f"{name}.json"
        steps.run(name, [py, "scripts/gpu_speed.py", str(model), *backends, "--device", device, "--tokens",
                         str(tokens), "--rounds", str(rounds), "--json", str(out)], 180, env=extra,
                  summary=speed_summary(out))

    # fp16 and bf16 on the GPU; the dry run keeps to bf16, PyTorch's CPU precision, for time.
    dtypes = ["transformers-bf16"] if dry else ["transformers-fp16", "transformers-bf16"]
    if have_hf:
        contract("contract-transformers", ",".join(dtypes), {"HEARTH_CONTRACT_HF": str(hf)})
        speed("speed-transformers", dtypes, hf)
    else:
        steps.skip("contract-transformers", "no tiny model")
        steps.skip("speed-transformers", "no tiny model")

    have_gguf = gguf_job is not None and steps.finish(gguf_job)
    llama_env = {}
    if llama_build is not None:
        if steps.finish(llama_build, lambda log: f"built in {time.monotonic() - llama_build.started:.0f} s"):
            llama_env = {"PYTHONPATH": os.pathsep.join([str(site / "llama"), env["PYTHONPATH"]])}
        else:
            have_gguf = False
    if dry or llama_env:
        if have_gguf:
            # The first CUDA run segfaulted at load: each load is tried in a child first,
            # and a change that makes a crashing load work is applied to the steps after it.
            probe_json = work / "probe-llama.cpp.json"
            probe_budget = max(20, min(PROBE_LIMIT, steps.left()) - 10)  # its summary must beat the step's limit
            loads = steps.run("probe-llama.cpp", [
                py, "scripts/gpu_llama_probe.py", str(gguf), "--gpu-layers", "0" if dry else "-1",
                "--budget", f"{probe_budget:.0f}", "--json", str(probe_json), *(["--baseline-only"] if dry else [])],
                PROBE_LIMIT, env=llama_env, summary=probe_summary(probe_json))
            fix = json.loads(probe_json.read_text()).get("fix") if probe_json.is_file() else None
            if fix:
                llama_env = {**llama_env, **fix["env"], "HEARTH_CONTRACT_LLAMA_OPTIONS": json.dumps(fix["hearth_options"])}
            if loads:
                contract("contract-llama.cpp", "llama.cpp", {"HEARTH_CONTRACT_GGUF": str(gguf), **llama_env})
                speed("speed-llama.cpp", ["llama.cpp"], gguf, llama_env)
            else:
                steps.skip("contract-llama.cpp", "llama.cpp does not load here (probe-llama.cpp)")
                steps.skip("speed-llama.cpp", "llama.cpp does not load here (probe-llama.cpp)")
        else:
            for name in ("probe-llama.cpp", "contract-llama.cpp", "speed-llama.cpp"):
                steps.skip(name, "no GGUF")
    else:
        for name in ("probe-llama.cpp", "contract-llama.cpp", "speed-llama.cpp"):
            steps.skip(name, "no CUDA build of llama-cpp-python")

    exl2 = work / "tiny-exl2"
    exl2_env = {"TORCH_EXTENSIONS_DIR": str(work / "torch_extensions"), "TORCH_CUDA_ARCH_LIST": "9.0"}
    if exl2_build is not None and steps.finish(exl2_build) and have_hf and steps.run(
            "exl2-model", [py, "scripts/gpu_tiny_model.py", "exl2", str(hf), str(exl2), "--work",
                           str(work / "exl2-work")], 180, env=exl2_env):
        contract("contract-exllamav2", "exllamav2", {"HEARTH_CONTRACT_EXL2": str(exl2), **exl2_env})
        speed("speed-exllamav2", ["exllamav2"], exl2, exl2_env)
    else:
        reason = "dry run: exllamav2 needs CUDA" if dry else "no exllamav2 build or no EXL2 model"
        for name in ("contract-exllamav2", "speed-exllamav2"):
            steps.skip(name, reason)

    table = steps.table()
    failed = [r.step for r in steps.results if r.status == "failed"]
    verdict = f"FAILED: {', '.join(failed)}" if failed else "every step that ran passed"
    print(f"\n[gpu-check] summary ({'dry run, CPU' if dry else 'CUDA'}; {verdict})\n{table}", flush=True)
    (work / "summary.txt").write_text(table + "\n" + verdict + "\n")
    (work / "results.json").write_text(json.dumps([asdict(r) for r in steps.results], indent=1))
    out = os.environ.get("OUT")
    if out:
        shutil.copy2(work / "summary.txt", Path(out) / "summary.txt")
        shutil.copy2(work / "results.json", Path(out) / "results.json")
        with tarfile.open(Path(out) / "logs.tar.gz", "w:gz") as tar:
            tar.add(steps.logs, arcname="logs")
    if args.work is None and dry:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
