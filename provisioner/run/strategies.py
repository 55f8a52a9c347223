"""How a run moves through its hosts: all at once (provision) or batch by batch (deploy).

A strategy only decides when each host's work starts and whether the rest still start; the work
itself (a walk, a rollout) is the caller's. ``in_serial_batches`` stops at the first batch with a
failed host, and between batches asks a gate (a deploy's "is the service still healthy?"): a
release that breaks the first host must never reach the second.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from provisioner.run.results import HostResult
from provisioner.run.session import HostJob

#: The work a strategy runs for one host; it reports failures in its result, never by raising.
HostWork = Callable[[HostJob], HostResult]
#: Asked after each batch but the last with the results so far: None to go on, else why not.
BatchGate = Callable[[Sequence[HostResult]], str | None]


def in_parallel(jobs: Sequence[HostJob], work: HostWork, workers: int) -> list[HostResult]:
    """Every host's work, at most ``workers`` at once; results in the jobs' order."""
    workers = max(1, min(workers, len(jobs)))
    if workers == 1:
        return [work(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(work, jobs))


def in_serial_batches(jobs: Sequence[HostJob], work: HostWork, batch_size: int,
                      gate: BatchGate | None = None, workers: int | None = None
                      ) -> list[HostResult]:
    """Hosts ``batch_size`` at a time (within a batch in parallel, at most ``workers`` at once),
    in the jobs' order.

    After a batch in which a host failed, or whose gate says stop, the remaining hosts are not
    started: each gets a result saying why (``skipped``), so the report names every host."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    results: list[HostResult] = []
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start:start + batch_size]
        results += in_parallel(batch, work, workers or len(batch))
        rest = jobs[start + batch_size:]
        if not rest:
            break
        stop = _why_stop(results, gate)
        if stop is not None:
            results += [HostResult(job.config.name, skipped=stop) for job in rest]
            break
    return results


def _why_stop(results: Sequence[HostResult], gate: BatchGate | None) -> str | None:
    failed = [result.name for result in results if result.failed]
    if failed:
        return f"not started: {', '.join(failed)} failed in an earlier batch"
    if gate is None:
        return None
    refused = gate(results)
    return None if refused is None else f"not started: {refused}"
