import resource
import subprocess
import sys

from tests.support import ROOT
from webui.app.flags import build_parser, check_network_safety, loader_options_from_args, settings_from_args


def test_help_is_fast_and_imports_no_heavy_library():
    code = ("import sys, runpy; sys.argv=['hearth','--help']\n"
            "try:\n    runpy.run_module('webui', run_name='__main__')\nexcept SystemExit: pass\n"
            "heavy = [m for m in ('gradio','llama_cpp','torch','fastapi','transformers') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    # CPU time, not wall time: the wall clock of a child on a shared, loaded machine says
    # more about the machine (0.45-0.6 s at load 4.6 for 0.2 CPU-s). Importing Gradio
    # alone costs 2.4 CPU-s.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    assert "HEAVY []" in done.stdout, done.stdout[-500:] + done.stderr[-500:]
    assert "--n-ctx" in done.stdout and "--listen" in done.stdout
    assert cpu < 0.6, f"hearth --help took {cpu:.2f} CPU-s"


def test_loader_flags_are_generated_from_the_options_dataclass():
    args = build_parser().parse_args(["--n-ctx", "1024", "--no-use-mmap", "--prompt-cache", "ram"])
    assert loader_options_from_args(args, "llama.cpp") == {"n_ctx": 1024, "use_mmap": False, "prompt_cache": "ram"}


def test_listen_without_a_login_is_refused():
    settings = settings_from_args(build_parser().parse_args(["--listen"]))
    assert settings.host == "0.0.0.0"
    assert "refusing to serve on the network" in check_network_safety(settings)


def test_listen_refusal_from_the_real_command():
    done = subprocess.run([sys.executable, "-m", "webui", "--listen"], capture_output=True, text=True,
                          cwd=ROOT, timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2
    assert "refusing to serve on the network" in done.stderr


def test_an_idle_unload_past_any_timer_is_refused_in_one_line():
    done = subprocess.run([sys.executable, "-m", "webui", "--idle-unload", "1e20", "--no-model"],
                          capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert done.returncode == 2, done.stderr[-500:]
    assert done.stderr.strip().splitlines()[-1] == "hearth: --idle-unload must be at most 5.256e+06 (got 1e+20)"
