"""Type stub of the private C extension profiler_service._core."""

from os import PathLike
from typing import Any, Callable, Optional, Sequence, Union, final

@final
class Period:
    """One finished sampling period (read-only)."""

    samples: int
    stacks: int
    nodes: int
    frames: int
    start_time: float
    end_time: float
    duration: float
    mode: str
    frequency: float
    max_depth: int
    heap_bytes: int
    threads: list[dict[str, Any]]
    stats: dict[str, int]
    load: list[tuple[int, int, int]]
    def __len__(self) -> int: ...
    def collapsed(self, thread: Union[None, str, int] = None, *, weighted: bool = False) -> str: ...
    def write(
        self,
        path: Union[str, bytes, PathLike[str]],
        builds: Optional[list[Any]] = None,
        meta: Optional[dict[str, Any]] = None,
        level: int = 0,
    ) -> None: ...

def start(
    mode: int,
    frequency: float,
    max_depth: int,
    max_stacks: int,
    max_samples: int,
    idle: Sequence[tuple[str, str]],
    main_tid: int = 0,
    trip_signum: int = 0,
    stall_threshold: float = 0.0,
    stall_report: float = 0.0,
    reactor_tid: int = 0,
    on_stall: Optional[Callable[[float, str, str], None]] = None,
) -> None: ...
def watch_poll(poll: Callable[..., Any]) -> Callable[..., Any]: ...
def _main_tick(signum: int, frame: Any) -> None: ...
def rotate() -> Period: ...
def concat(periods: Sequence[Period]) -> Period: ...
def stop(route_disposition: int = -1) -> Period: ...
def is_running() -> bool: ...
def status() -> Optional[dict[str, Any]]: ...
def _before_fork() -> None: ...
def _after_fork_parent() -> None: ...
def _after_fork_child() -> None: ...
