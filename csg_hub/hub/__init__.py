"""The Hub side: one push path (`hub_mixin`), the artifacts it pushes (a CSG model's repo, a dense timm
export, a folder as it is), model cards, remote code, and loading any zoo classifier by id. Depends on the configuration, the
layers and the checkpoint format, never on the modeling module (models call into it, not the reverse)."""

from .cards import accuracy_result, card_result_splits, model_card, save_card, update_card_accuracy
from .eval_results import eval_results_files, read_eval_results, write_eval_results
from .folder_repo import FolderRepo
from .hub_mixin import HubArtifact, push_to_hub
from .model_loading import load_classifier, model_label_names
from .model_repo import CSGModelRepo, push_model
from .timm_export import TimmExport, push_timm, save_timm

__all__ = [
    "CSGModelRepo",
    "FolderRepo",
    "HubArtifact",
    "TimmExport",
    "accuracy_result",
    "card_result_splits",
    "eval_results_files",
    "load_classifier",
    "model_card",
    "model_label_names",
    "push_model",
    "push_timm",
    "push_to_hub",
    "read_eval_results",
    "save_card",
    "save_timm",
    "update_card_accuracy",
    "write_eval_results",
]
