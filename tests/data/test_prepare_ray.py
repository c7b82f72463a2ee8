"""`lmforge data prepare --executor ray` on a local Ray instance the test starts: the same
kept documents and report as the local executor (exact and MinHash dedup on), and a task
that fails is the run's one-line error rather than a stage run on partial data (datatrove's
Ray executor logs a failed task at debug level and carries on)."""

from __future__ import annotations

import signal

import pytest

pytest.importorskip("datatrove")
ray = pytest.importorskip("ray")

from lmforge.data.clean import DedupSettings  # noqa: E402
from lmforge.data.pipeline import DatasetSpec  # noqa: E402
from lmforge.data.prepare import PrepareOptions, prepare  # noqa: E402
from lmforge.errors import LmforgeError  # noqa: E402
from tests.data.test_prepare import corpus, kept_by_prepare, write_sources  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    # ray.init installs SIGTERM/SIGINT handlers in this process; later tests expect their own
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def test_ray_executor_keeps_what_the_local_executor_keeps(tmp_path, write_jsonl, local_ray):
    docs = corpus(seed=5, n=200, exact_share=0.15, near_share=0.1)
    specs = write_sources(tmp_path, docs, 2, write_jsonl)
    on_ray = prepare(specs, DedupSettings(), None, PrepareOptions(tmp_path / "ray", executor="ray", workers=2, tasks=2))
    local = prepare(specs, DedupSettings(), None, PrepareOptions(tmp_path / "local", tasks=2))
    assert on_ray["sources"] == local["sources"]
    kept = kept_by_prepare(tmp_path / "ray")
    assert kept == kept_by_prepare(tmp_path / "local")
    dropped = {reason for row in local["sources"] for reason in row["docs"]["dropped"]}
    assert dropped == {"duplicate", "near_duplicate"} and 100 < len(kept) < 190
    assert not (tmp_path / "ray" / "work").exists()


def test_a_failed_ray_task_is_the_runs_error(tmp_path, local_ray):
    broken = tmp_path / "c.parquet"
    broken.write_bytes(b"not parquet at all")
    options = PrepareOptions(tmp_path / "out", executor="ray")
    with pytest.raises(LmforgeError, match=r"c.parquet: datatrove cannot read this .parquet file") as error:
        prepare([DatasetSpec(str(broken))], DedupSettings(), None, options)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out" / "logs" / "exact_find").exists()  # the next stage never ran
