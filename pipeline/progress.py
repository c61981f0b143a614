"""Progress on long loops: a tqdm bar on a terminal, periodic log lines to stderr otherwise (DVC, CI, files)."""
import sys
import time
from collections.abc import Iterable, Iterator


def progress(items: Iterable, total: int | None = None, desc: str = "", every_s: float = 10.0) -> Iterator:
    """Yield `items`, reporting count, rate and ETA. `total` defaults to len(items) where it has one."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(items, total=total, desc=desc, file=sys.stderr)
        return
    start = last = time.monotonic()
    n = 0
    for n, item in enumerate(items, 1):
        yield item
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            log_rate(desc, n, total, now - start)
    log_rate(desc, n, total, time.monotonic() - start, done=True)


def log_rate(desc: str, n: int, total: int | None, elapsed: float, done: bool = False) -> None:
    rate = n / elapsed if elapsed > 0 else float("inf")
    where = f"{n}/{total}" if total else f"{n}"
    eta = f", eta {(total - n) / rate:.0f}s" if total and rate > 0 and not done else ""
    print(f"[{desc}] {where} in {elapsed:.0f}s ({rate:.1f}/s{eta}){' done' if done else ''}", file=sys.stderr, flush=True)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
