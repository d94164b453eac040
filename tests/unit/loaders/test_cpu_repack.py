"""The AMX crash cannot happen on a CPU without AMX, so these tests stand a child
process that dies with SIGSEGV in for the crashing decode (a test double for hardware
this machine lacks). The real probe child runs in tests/integration."""
import sys

from loaders import cpu_repack

CRASH = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
SURVIVE = [sys.executable, "-c", "print('probe-ok')"]


def test_no_amx_keeps_the_fast_path_without_probing(tmp_path):
    assert cpu_repack.decide("auto", tmp_path / "m.gguf", "Q4_1", flags={"avx2"}, command=CRASH) is True


def test_amx_that_crashes_turns_repacking_off_and_remembers(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cpu_repack.decide("auto", tmp_path / "m.gguf", "Q4_1", flags={"amx_tile"}, command=CRASH) is False
    # cached: a surviving probe is not even run for the same CPU and quantization
    assert cpu_repack.decide("auto", tmp_path / "m.gguf", "Q4_1", flags={"amx_tile"}, command=SURVIVE) is False


def test_amx_that_works_keeps_repacking(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cpu_repack.decide("auto", tmp_path / "m.gguf", "Q8_0", flags={"amx_tile"}, command=SURVIVE) is True


def test_explicit_settings_win(tmp_path):
    assert cpu_repack.decide("off", tmp_path, None, flags=set()) is False
    assert cpu_repack.decide("on", tmp_path, None, flags={"amx_tile"}, command=CRASH) is True


def test_a_new_llama_cpp_build_is_probed_again(tmp_path, monkeypatch):
    """A rebuild of the same version (say, without the AMX kernels) may no longer
    crash: the verdict belongs to the build, not only to the version."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(cpu_repack, "_build_identity", lambda: "0.3.36|1000|1")
    assert cpu_repack.decide("auto", tmp_path / "m.gguf", "Q4_1", flags={"amx_tile"}, command=CRASH) is False
    monkeypatch.setattr(cpu_repack, "_build_identity", lambda: "0.3.36|2000|2")
    assert cpu_repack.decide("auto", tmp_path / "m.gguf", "Q4_1", flags={"amx_tile"}, command=SURVIVE) is True
