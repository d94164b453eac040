"""A render process: renders chat templates for Hearth, one batch at a time.

Started by render_pool.py as `python -m webui.chat.render_worker`. It speaks one JSON
line each way over its stdin and stdout:

    ->  {"renders": [{"template": ..., "messages": [...], "add_generation_prompt": true,
                      "bos_token": "", "eos_token": "", "extra": {}}, ...]}
    <-  {"results": [{"text": "..."} | {"error": "one line"}, ...]}
    <-  {"cutoff": "one line"}            (out of memory; the process then ends)

It limits itself before it answers anything: its address space to what it has after
start-up plus MEMORY_LIMIT_MB, and its CPU time to CPU_BACKSTOP_S past what it has
used, renewed for each batch. The pool kills it on the wall-clock limit long before
the CPU limit, which is there for a render process whose Hearth has died while it
spins (it would otherwise spin forever: nothing else reads its pipe).
"""
from __future__ import annotations

import json
import os
import resource
import sys
from typing import Any, BinaryIO

from webui.chat.sandbox import ChatTemplateError, render_in_sandbox

# A legitimate render needs a few MB: a prompt is at most MAX_OUTPUT_CHARS (4 M
# characters, 16 MB as str at worst) plus its messages and their JSON. 256 MB leaves
# room for that several times over and stops a string doubled in a loop at 128 MB.
MEMORY_LIMIT_MB = 256
CPU_BACKSTOP_S = 10


def _limit_memory() -> None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            vm_kb = next(int(line.split()[1]) for line in f if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        vm_kb = 64 * 1024  # not Linux: a typical start-up size
    limit = (vm_kb * 1024) + MEMORY_LIMIT_MB * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError):  # a platform without RLIMIT_AS: the pool still kills on time
        pass


def _limit_cpu() -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime) + CPU_BACKSTOP_S
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _render(call: dict[str, Any]) -> dict[str, str]:
    try:
        return {"text": render_in_sandbox(call["template"], call["messages"],
                                          add_generation_prompt=call["add_generation_prompt"],
                                          bos_token=call["bos_token"], eos_token=call["eos_token"],
                                          **call["extra"])}
    except ChatTemplateError as e:
        return {"error": e.message}
    except MemoryError:
        raise
    except Exception as e:  # whatever the sandbox let through is still the template's fault
        return {"error": ChatTemplateError(f"the chat template failed: {type(e).__name__}: {e}").message}


def encode_line(message: dict[str, Any]) -> bytes:
    """One protocol line. Characters travel as they are (not as \\u escapes, which
    JSON would read back with two lone surrogates joined into one character), so a
    prompt comes back exactly as rendered."""
    return json.dumps(message, ensure_ascii=False).encode("utf-8", "surrogatepass") + b"\n"


def _send(out: BinaryIO, reply: dict[str, Any]) -> None:
    out.write(encode_line(reply))
    out.flush()


def main() -> None:
    # The protocol gets its own copy of stdout; anything printed by accident goes to
    # stderr instead of corrupting a reply.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a killed render leaves no core file
    _limit_memory()
    _send(out, {"ready": True})
    for line in sys.stdin.buffer:
        try:
            _limit_cpu()
            request = json.loads(line.decode("utf-8", "surrogatepass"))
            _send(out, {"results": [_render(call) for call in request["renders"]]})
        except MemoryError:
            _send(out, {"cutoff": f"the chat template needed more than {MEMORY_LIMIT_MB} MB of memory "
                                  "to render; it was stopped"})
            return  # a fresh process for the next render: this heap may stay fragmented


if __name__ == "__main__":
    main()
