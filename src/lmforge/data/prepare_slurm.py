"""`lmforge data prepare --executor slurm`: each stage becomes a datatrove Slurm array job
that depends on the one before. With `sbatch` on the PATH they are submitted; without it
(a login node of another cluster, or a laptop) the scripts are only written —
OUTPUT/slurm/<n>_<stage>.slurm plus OUTPUT/slurm/submit.sh, which submits them in order
with afterok dependencies — and the command says so."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from lmforge.errors import LmforgeError

log = logging.getLogger("lmforge.data")


def run_slurm(stages, options) -> None:
    import datatrove.executor.slurm as slurm

    submit = shutil.which("sbatch") is not None
    folder = Path(options.output) / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    written: list[tuple[str, Path]] = []

    def write_only(contents: str, _retriever, *args) -> str:
        # datatrove calls this to submit; here it only keeps the script (dependencies are
        # submit.sh's), and returns a placeholder job id
        number = len(written) + 1
        name = current["name"] if number == current["first"] else f"{current['name']}_stats"
        path = folder / f"{number:02d}_{name}.slurm"
        path.write_text(contents, encoding="utf-8")
        written.append((name, path))
        return str(number)

    current: dict = {}
    previous = None
    executors = []
    for stage in stages:
        executor = slurm.SlurmPipelineExecutor(
            stage.pipeline,
            tasks=stage.tasks,
            time=options.slurm_time,
            partition=options.slurm_partition,
            mem_per_cpu_gb=options.slurm_mem_per_cpu_gb,
            job_name=f"lmforge_prepare_{stage.name}",
            logging_dir=str(Path(options.output) / "logs" / stage.name),
            depends=previous,
        )
        executors.append(executor)
        previous = executor
    if submit:
        log.info("[data prepare] submitting %d Slurm jobs (logs under %s/logs)", len(stages), options.output)
        executors[-1].run()
        return
    original = slurm.launch_slurm_job
    slurm.launch_slurm_job = write_only
    try:
        for stage, executor in zip(stages, executors):
            current.update(name=stage.name, first=len(written) + 1)
            executor.depends = None  # submit.sh chains them
            executor.launch_job()
    except Exception as exc:  # noqa: BLE001
        raise LmforgeError(f"--executor slurm: could not write the job scripts ({type(exc).__name__}: {exc})") from exc
    finally:
        slurm.launch_slurm_job = original
    lines = [
        "#!/bin/bash",
        "# lmforge data prepare: submit the stages in order, each after the previous one succeeds",
        "set -e",
        "prev=",
    ]
    for name, path in written:
        if name.endswith("_stats"):
            continue
        lines.append(f'prev=$(sbatch --parsable ${{prev:+--dependency=afterok:$prev}} "{path.resolve()}")')
        lines.append(f'echo "{name}: job $prev"')
    (folder / "submit.sh").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "submit.sh").chmod(0o755)
    print(
        f"[lmforge] sbatch not found: wrote {len(stages)} Slurm job scripts and {folder / 'submit.sh'}; nothing submitted"
    )
