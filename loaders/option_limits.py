"""Upper bounds that loader options share: each sizes something a native library
creates (threads, a KV cache, buffers) and that library aborts the process, rather
than raising, when asked for too much."""
from __future__ import annotations

import os


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


# Threads beyond the cores only slow a reply down (their workers spin at barriers:
# measured on 2 cores, loading SmolLM2 and generating 2 tokens took 1.1 s with 64
# threads and 4.5 s with 512), and at 100,000 llama.cpp's thread start crashed the
# process (SIGSEGV). Four per CPU leaves room for hyperthreads and for a user who
# knows better, and keeps every thread count far from what the OS refuses.
MAX_THREADS = 4 * max(1, os.cpu_count() or 1)

# 16M tokens is past any model's trained context (the longest claim 10M), and already
# needs hundreds of GiB of KV cache for the smallest model (SmolLM2-135M: 360 GiB).
MAX_CONTEXT_TOKENS = 2**24
