"""A process's start-up imports, without the cyclic garbage collector walking them.

Importing mcp and the model's SDK builds hundreds of thousands of objects (their pydantic models),
none of them garbage. CPython runs a collection every 700 new objects, and each full one walks all
that exist so far: about a quarter of a worker's import CPU and a sixth of a tool server's went to
finding nothing. The collector is paused while they import, then what they built is frozen
(gc.freeze): later collections leave it out, as it lives as long as the process.
"""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
