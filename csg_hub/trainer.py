"""`CSGTrainer`: transformers' `Trainer` whose Hub pushes keep the csg model card and no pickle.

`Trainer.push_to_hub` replaces a repo's card with its generic one and uploads `training_args.bin` (a
pickle of the arguments). The subclass writes the csg card instead (measured results kept when the
weights are the ones they were measured on, see `push.carried_card_fields`) and records the arguments
as `training_args.json`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from huggingface_hub import EvalResult
from transformers import Trainer
from transformers.trainer_utils import HubStrategy
from transformers.utils import CONFIG_NAME, SAFE_WEIGHTS_NAME, PushInProgress, hf_api

from .atomic_write import write_file_atomic
from .hub.cards import model_card
from .hub.model_repo import carried_card_fields
from .integrity import recorded_digest

PICKLED_ARGS = "training_args.bin"
ARGS_JSON = "training_args.json"
_MODEL_FILES = (CONFIG_NAME, SAFE_WEIGHTS_NAME, "preprocessor_config.json")


class CSGTrainer(Trainer):
    """A `Trainer` for csg-hub models: same arguments and behaviour, but pushes (`push_to_hub()` and the
    `hub_strategy="every_save"` pushes during training) carry the csg model card and `training_args.json`
    instead of the generic card and the pickled `training_args.bin`.

    `push_to_hub(results=[csg_hub.accuracy_result(...)], dense_baseline=..., notes=...)` fills the card;
    what is not given comes from the card the model was loaded with.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.args.push_to_hub and self.args.hub_strategy in (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS):
            raise ValueError(
                f"hub_strategy={self.args.hub_strategy.value!r} uploads resumable checkpoints, which transformers "
                "stores as pickles (optimizer.pt, rng_state.pth, training_args.bin); CSGTrainer keeps pickles off "
                "the Hub: use hub_strategy='every_save' or 'end' (or transformers.Trainer to opt in)."
            )

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        if self.args.should_save:
            self._args_as_json(Path(output_dir or self.args.output_dir))

    def _args_as_json(self, folder: Path) -> None:
        (folder / PICKLED_ARGS).unlink(missing_ok=True)
        write_file_atomic(folder / ARGS_JSON, self.args.to_json_string())

    def create_model_card(
        self,
        results: list[EvalResult] | None = None,
        dense_baseline: float | None = None,
        base_model: str | None = None,
        finetuned_from: str | None = None,
        notes: str | None = None,
        tags: str | list[str] | None = None,
        **unused,
    ) -> None:
        """Write the csg card to `output_dir/README.md` (transformers' own card arguments other than
        `tags` and `finetuned_from`, which becomes `base_model`, do not apply)."""
        if not self.is_world_process_zero():
            return
        model = self.accelerator.unwrap_model(self.model)
        output_dir = Path(self.args.output_dir)
        weights = output_dir / SAFE_WEIGHTS_NAME
        repo_id = self.hub_model_id or self.args.hub_model_id or output_dir.name
        fields = carried_card_fields(
            model,
            repo_id,
            recorded_digest(weights) if weights.exists() else None,
            token=self.args.hub_token,
            results=results,
            dense_baseline=dense_baseline,
            base_model=base_model or finetuned_from,
            notes=notes,
        )
        fields.setdefault(
            "training_command",
            f"# transformers Trainer: {self.args.num_train_epochs:g} epoch(s), learning rate {self.args.learning_rate:g}, "
            f"batch {self.args.per_device_train_batch_size} per device (all arguments in {ARGS_JSON})",
        )
        card = model_card(
            model,
            repo_id,
            checkpoint_bytes=weights.stat().st_size if weights.exists() else None,
            tags=[tags] if isinstance(tags, str) else tags,
            **fields,
        )
        write_file_atomic(output_dir / "README.md", str(card))

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        # transformers' version writes the pickled arguments into the uploaded folder: the same push,
        # with the csg card and the JSON arguments instead
        if not self.is_world_process_zero() or self.args.hub_strategy == HubStrategy.END:
            return
        if not self.args.hub_always_push and self.push_in_progress is not None and not self.push_in_progress.is_done():
            return
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        output_dir = Path(self.args.output_dir)
        for name in _MODEL_FILES:
            if (Path(checkpoint_folder) / name).is_file():
                shutil.copy(Path(checkpoint_folder) / name, output_dir / name)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        self._args_as_json(output_dir)
        self.create_model_card()
        job = hf_api().upload_folder(
            repo_id=self.hub_model_id,
            folder_path=output_dir,
            commit_message=f"Training in progress, step {self.state.global_step}",
            token=self.args.hub_token,
            run_as_future=True,
            ignore_patterns=["_*", "checkpoint-*", PICKLED_ARGS],
            revision=self.args.hub_revision,
        )
        if self.push_in_progress is None or self.push_in_progress.is_done():
            self.push_in_progress = PushInProgress([job])
        else:
            self.push_in_progress.jobs.append(job)
