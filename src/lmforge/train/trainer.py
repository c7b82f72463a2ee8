"""A thin `transformers.Trainer` subclass: the loss comes from a pluggable objective, the
optimizer and schedule from lmforge's factories, and evaluation loss is averaged over
label tokens (not over batches). Everything else — accumulation, DDP/FSDP/DeepSpeed,
mixed precision, checkpoints, resume, logging integrations — is the Trainer's own."""

from __future__ import annotations

import json
import math
import shutil
from functools import partial
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
from transformers import Trainer
from transformers.trainer_utils import rotate_checkpoints

from lmforge import checkpoints
from lmforge.errors import LmforgeError
from lmforge.objectives import Objective
from lmforge.objectives.ce import row_nll
from lmforge.objectives.forward import forward_outputs
from lmforge.objectives.preference import LOGGED_METRICS
from lmforge.train.efficiency import TokenCounter
from lmforge.optim.optimizers import build_optimizer, parameter_groups
from lmforge.optim.schedules import build_schedule
from lmforge.train.callbacks import NonFiniteGuard


def count_label_tokens(batches: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    """Label tokens that are prediction targets (labels are shifted: position 0 never is)."""
    return sum(batch["labels"][:, 1:].ne(-100).sum() for batch in batches)


class LmforgeTrainer(Trainer):
    # Our objectives divide by the global label-token count themselves.
    loss_is_scaled_for_ga = True

    def __init__(
        self,
        *args,
        objective: Objective,
        optimizer_spec: dict[str, Any],
        schedule_spec: dict[str, Any],
        guard: NonFiniteGuard,
        no_decay_params: list[torch.nn.Parameter] = (),
        eval_data_collator=None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        # Training batches may carry objective noise (ReMask masking); evaluation never does.
        self.eval_data_collator = eval_data_collator or self.data_collator
        self.objective = objective
        self.optimizer_spec = optimizer_spec
        self.schedule_spec = schedule_spec
        self.guard = guard
        self.no_decay_params = list(no_decay_params)
        self.token_counter = TokenCounter()  # real tokens and slots of the training batches
        self.logged_sums: dict[str, torch.Tensor] = {}
        self.logged_counts: dict[str, int] = {}
        # lmforge's own state saved in every checkpoint (name -> object with state_dict /
        # load_state_dict), so a resumed run continues it: the non-finite guard's counts
        self.checkpoint_states: dict[str, Any] = {"nonfinite_guard": guard}
        self._staging: Path | None = None

    def create_accelerator_and_postprocess(self):
        super().create_accelerator_and_postprocess()
        state = self.accelerator.state
        if self.args.fsdp_plugin_args is not None and state.distributed_type == DistributedType.MULTI_CPU:
            # accelerate switches to FSDP only on accelerator backends; on CPU processes
            # (gloo) it would silently train plain DDP. PyTorch's fully_shard runs on CPU, so
            # route it there too.
            plugin = FullyShardedDataParallelPlugin(**self.args.fsdp_plugin_args)
            if state.mixed_precision != "no":
                plugin.set_mixed_precision(state.mixed_precision)
            state.distributed_type = DistributedType.FSDP
            # every later AcceleratorState() copies the process state over its own: keep them equal,
            # as accelerate itself does at the end of AcceleratorState.__init__
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP
            state.fsdp_plugin = plugin
            self.is_fsdp_enabled = True

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        model = self.accelerator.unwrap_model(self.model)
        if not hasattr(model, "peft_config"):
            return super()._save(output_dir, state_dict)
        # peft's default ("auto") also saves both whole embedding matrices whenever the
        # vocabulary grew, looking the base up on the hub to tell. The added tokens' rows
        # are saved as trainable tokens already, so the adapter stays small.
        save = model.save_pretrained
        model.save_pretrained = partial(save, save_embedding_layers=False)
        try:
            return super()._save(output_dir, state_dict)
        finally:
            del model.save_pretrained

    # -- checkpoints -----------------------------------------------------------

    def _get_output_dir(self, trial) -> str:
        # while a checkpoint is saved, the Trainer's whole save goes into a staging directory
        return str(self._staging) if self._staging is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        """The Trainer's checkpoint, whole or not at all: written into a staging directory,
        given a manifest of file hashes, then renamed into place (lmforge.checkpoints). A
        save that fails (a full disk) is removed and the previous checkpoint stays."""
        run_dir = Path(super()._get_output_dir(trial))
        step = self.state.global_step
        staged = checkpoints.staging_root(run_dir, step) / f"checkpoint-{step}"
        self._staging = staged.parent
        try:
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self._staging = None
            if self.args.should_save:
                state = {name: holder.state_dict() for name, holder in self.checkpoint_states.items()}
                (staged / checkpoints.LMFORGE_STATE).write_text(json.dumps(state), encoding="utf-8")
            self.accelerator.wait_for_everyone()  # every process wrote its shards and RNG state
            if self.args.should_save:
                checkpoints.commit(staged, run_dir / staged.name, step)
        except Exception as error:
            if self.args.should_save:
                shutil.rmtree(staged.parent, ignore_errors=True)
            raise checkpoints.save_failed(error, run_dir, step) from error
        if self.args.should_save:
            rotate_checkpoints(output_dir=str(run_dir), save_total_limit=self.args.save_total_limit)
        self.accelerator.wait_for_everyone()

    def _run_epoch(self, *args, **kwargs):
        # Resumed from a checkpoint at max_steps, the Trainer's loop (transformers 5.24) would
        # still take one optimizer step (it checks the budget only after a step): at LR 0, with
        # a log row an uninterrupted run never wrote. Nothing is left to train: no epoch runs.
        if 0 < self.state.max_steps <= self.state.global_step:
            self.control.should_training_stop = True
            return None
        return super()._run_epoch(*args, **kwargs)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = Path(resume_from_checkpoint) / checkpoints.LMFORGE_STATE
        saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        for name, holder in self.checkpoint_states.items():
            if name in saved:
                holder.load_state_dict(saved[name])

    # -- loss ------------------------------------------------------------------

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batches = []
        for _ in range(num_batches):
            try:
                batches.append(next(epoch_iterator))
            except StopIteration:
                break
        if not batches:
            return batches, None
        # an objective may normalise by something else than label tokens (rank: groups)
        counter = getattr(self.objective, "count_items", None)
        counts = counter(batches) if counter else count_label_tokens(batches)
        if isinstance(counts, dict):
            return batches, {key: self._global_count(value, device) for key, value in counts.items()}
        return batches, self._global_count(counts, device)

    def _global_count(self, count: torch.Tensor, device) -> torch.Tensor:
        count = torch.as_tensor(count).to(device)
        return self.accelerator.gather(count).sum() if self.args.world_size > 1 else count

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, metrics = self.objective(model, inputs, num_items_in_batch)
        if model.training:
            self.token_counter.observe(inputs)
            for name in LOGGED_METRICS:  # preference objectives' rewards, logged with the loss
                if name in metrics:
                    # kept as tensors: a float() here would wait for the device every micro-batch
                    self.logged_sums[name] = self.logged_sums.get(name, 0.0) + metrics[name].detach()
                    self.logged_counts[name] = self.logged_counts.get(name, 0) + 1
            self.guard.observe_loss(loss)
            if num_items_in_batch is not None and self.args.world_size > 1:
                # DDP averages gradients over processes; the loss was already divided by
                # the global token count, so undo that average.
                loss = loss * self.args.world_size
        return (loss, metrics) if return_outputs else loss

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        """Training log lines also carry the objective's own metrics (preference rewards,
        margin, accuracy): their means over the micro-batches since the previous line."""
        if "loss" in logs and (self.logged_counts or self.args.world_size > 1):
            logs.update(self._logged_means())
        super().log(logs, *args, **kwargs)

    def _logged_means(self) -> dict[str, float]:
        """The objective's metrics since the last log line, every process's micro-batches in
        them; every process calls this (one collective, one row per name in LOGGED_METRICS)."""
        device = self.args.device
        sums = [
            torch.as_tensor(self.logged_sums.get(name, 0.0), dtype=torch.float32, device=device)
            for name in LOGGED_METRICS
        ]
        counts = [self.logged_counts.get(name, 0) for name in LOGGED_METRICS]
        totals = torch.stack([torch.stack(sums), torch.tensor(counts, dtype=torch.float32, device=device)])
        if self.args.world_size > 1:  # the main process alone writes the log: reduce over every process
            totals = self.accelerator.reduce(totals, reduction="sum")
        self.logged_sums, self.logged_counts = {}, {}
        return {
            name: round(total / count, 6) for name, total, count in zip(LOGGED_METRICS, *totals.tolist()) if count > 0
        }

    # -- optimizer and schedule ------------------------------------------------

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            model = model or self.model
            groups = parameter_groups(
                list(model.named_parameters()),
                set(self.get_decay_parameter_names(model)),
                self.optimizer_spec["weight_decay"],
                self.no_decay_params,
            )
            hyper = {k: v for k, v in self.optimizer_spec.items() if k != "name"}
            self.optimizer = build_optimizer(self.optimizer_spec["name"], groups, **hyper)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            spec = dict(self.schedule_spec)
            try:
                self.lr_scheduler = build_schedule(
                    spec.pop("name"), optimizer or self.optimizer, num_training_steps, **spec
                )
            except ValueError as exc:  # e.g. warmup + decay longer than the run
                raise LmforgeError(f"train.schedule: {exc}") from exc
        return self.lr_scheduler

    # -- evaluation ------------------------------------------------------------

    def get_eval_dataloader(self, eval_dataset=None):
        train_collator, self.data_collator = self.data_collator, self.eval_data_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Validation loss averaged over every label token of the validation set, and its
        perplexity. (The stock loop averages per-batch means, which over-weights short
        batches.) Every objective evaluates as plain cross-entropy on the clean inputs;
        with several processes, rows repeated to even out the last batch are dropped. A dict
        of validation sets (a stream's, one per source) is scored set by set as
        `<prefix>/<name>/loss` and `/perplexity`; the overall loss is over all their tokens."""
        sets = eval_dataset if eval_dataset is not None else self.eval_dataset
        named = sets if isinstance(sets, dict) else {None: sets}
        model = self.model_wrapped if self.is_fsdp_enabled or self.is_deepspeed_enabled else self.model
        was_training = model.training
        model.eval()
        nll_sum = torch.zeros((), dtype=torch.float64, device=self.args.device)
        tokens = torch.zeros((), dtype=torch.long, device=self.args.device)
        results = {}
        with torch.no_grad(), self.compute_loss_context_manager():
            for name, dataset in named.items():
                set_nll = torch.zeros((), dtype=torch.float64, device=self.args.device)
                set_tokens = torch.zeros((), dtype=torch.long, device=self.args.device)
                for batch in self.get_eval_dataloader(dataset):
                    batch = self._prepare_inputs(batch)
                    row_sums, row_tokens = row_nll(forward_outputs(model, batch), batch["labels"])
                    row_sums, row_tokens = self.accelerator.gather_for_metrics((row_sums, row_tokens))
                    set_nll += row_sums.sum()
                    set_tokens += row_tokens.sum()
                if name is not None:
                    set_loss = (set_nll / set_tokens.clamp_min(1)).item()
                    results[f"{metric_key_prefix}/{name}/loss"] = set_loss
                    results[f"{metric_key_prefix}/{name}/perplexity"] = math.exp(min(set_loss, 50.0))
                nll_sum += set_nll
                tokens += set_tokens
        model.train(was_training)
        loss = (nll_sum / tokens.clamp_min(1)).item()
        results = {
            f"{metric_key_prefix}_loss": loss,
            f"{metric_key_prefix}_perplexity": math.exp(min(loss, 50.0)),
            f"{metric_key_prefix}_tokens": int(tokens.item()),
            **results,
        }
        self.log(results)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics=results)
        return results
