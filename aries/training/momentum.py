"""Accelerated preference optimisation: Nesterov momentum between iterations (`train.momentum`).

He, Yuan and Gu 2024, "Accelerated Preference Optimization for Large Language Model Alignment"
(arXiv 2410.06293), read iterative preference optimisation as a proximal point method and add
Nesterov's extrapolation after each iteration's optimisation step (their Algorithm 1, the
extrapolation line; equation reference not verified against the paper's text, see
docs/methods-and-baselines.md):

    π̂_{t+1} = the policy trained from π_t with reference π_t        (the proximal step)
    π_{t+1}(y|x) ∝ π̂_{t+1}(y|x) · (π̂_{t+1}(y|x) / π̂_t(y|x))^α       (the extrapolation)

A sequence-level product of two networks is no network, so the extrapolation is made on the
weights [design]: θ_{t+1} = θ̂_{t+1} + α (θ̂_{t+1} − θ̂_t), where θ̂ are the trained weights
before extrapolation (θ̂_0: the weights iteration 0 starts from). The trained weights are kept
(`RunDir.before_momentum`) and the extrapolated policy is computed from them into a separate
folder that is renamed into place whole: rerunning the step gives the same folder, so a resumed
run never extrapolates twice.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from aries import AriesError
from aries.core.jsonl import atomic_write_json, replace_folder, writing

MOMENTUM_RECORD = "momentum.json"
"""Written into the extrapolated folder: α and the two folders it was computed from."""


def extrapolate(trained: dict[str, Any], previous: dict[str, Any], alpha: float) -> dict[str, Any]:
    """θ̂ + α (θ̂ − θ_previous) for every floating-point tensor of `trained` (computed in float32,
    stored in the trained tensor's dtype); integer tensors are kept as trained."""
    result = {}
    for name, new in trained.items():
        if name not in previous:
            raise AriesError(f"momentum: the previous weights have no tensor {name!r}")
        old = previous[name]
        if tuple(old.shape) != tuple(new.shape):
            raise AriesError(
                f"momentum: tensor {name!r} is {tuple(new.shape)} after training but "
                f"{tuple(old.shape)} before (not the same architecture)"
            )
        if not new.is_floating_point():
            result[name] = new
            continue
        step = new.float() - old.float()
        result[name] = (new.float() + alpha * step).to(new.dtype)
    return result


def weight_files(model: str | Path) -> list[Path]:
    """The safetensors files of a model folder (or of a hub model in the local cache)."""
    folder = Path(model)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(str(model), allow_patterns=["*.safetensors"]))
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise AriesError(f"momentum: no *.safetensors weights in {folder}")
    return files


def load_weights(model: str | Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    weights: dict[str, Any] = {}
    for file in weight_files(model):
        weights.update(load_file(file))
    return weights


def write_extrapolated(
    trained: str | Path, previous: str | Path, out: str | Path, alpha: float
) -> None:
    """Write the extrapolated policy from the trained folder and the previous weights to `out`:
    the trained folder's files (tokenizer, config, log history; not a LoRA `adapter/`, which no
    longer describes the weights) with every weight file extrapolated, renamed into place whole."""
    from safetensors.torch import load_file, save_file

    trained, out = Path(trained), Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # what a killed write left
    with writing(out, "the extrapolated model", partial=tmp):
        shutil.copytree(trained, tmp, ignore=shutil.ignore_patterns("*.safetensors", "adapter"))
        before = load_weights(previous)
        for file in weight_files(trained):
            tensors = extrapolate(load_file(file), before, alpha)
            save_file(tensors, tmp / file.name, metadata={"format": "pt"})
        record = {"alpha": alpha, "trained": str(trained), "previous": str(previous)}
        atomic_write_json(tmp / MOMENTUM_RECORD, record)
        replace_folder(tmp, out)
