"""A LoRA policy as vLLM serves it: one base model plus one adapter.

With `train.lora`, iteration t trains a fresh adapter on π_t and saves π_{t+1} as merged weights
plus `adapter/`, whose base is π_t's folder (aries/training/checkpoints.py). So π_{t+1} is the
run's first model plus the sum of every iteration's low-rank update, and a sum of LoRA updates
is one LoRA update of the summed rank: s₁B₁A₁ + s₂B₂A₂ = [s₁B₁ s₂B₂][A₁; A₂]. Stacked so, every
policy of a run is an adapter on the same base, which is what lets one vLLM engine or server
serve all of them and swap adapters instead of reloading weights (docs/scaling.md).
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM takes for `max_lora_rank` (vllm.config.lora.MaxLoRARanks)."""


@dataclass(frozen=True)
class LoraPolicy:
    """A policy that is `base` plus the updates of `adapters` (applied in that order)."""

    base: str
    adapters: tuple[Path, ...]
    ranks: tuple[int, ...]

    @property
    def rank(self) -> int:
        return sum(self.ranks)


def adapter_folder(model: str | Path) -> Path | None:
    """The PEFT adapter of a model folder: the folder itself, or the `adapter/` a LoRA training
    saved next to the merged weights (None: neither)."""
    path = Path(model).expanduser()
    for folder in (path, path / "adapter"):
        if (folder / ADAPTER_CONFIG).is_file() and (folder / ADAPTER_WEIGHTS).is_file():
            return folder
    return None


def _servable(config: dict) -> bool:
    """Plain LoRA that vLLM applies as it is: no DoRA, no extra trained modules, one rank."""
    return (
        config.get("peft_type") == "LORA"
        and not config.get("use_dora")
        and not config.get("modules_to_save")
        and not config.get("rank_pattern")
        and not config.get("alpha_pattern")
        and config.get("bias", "none") == "none"
    )


def lora_policy(model: str) -> LoraPolicy | None:
    """The base and adapters of `model` (a folder), following each adapter's base while that is
    a LoRA policy too; None when `model` is not a LoRA policy that vLLM serves as one adapter
    (a trained policy folder then serves its merged weights)."""
    policy = _adapter_chain(model)
    return policy if policy is not None and policy.rank <= VLLM_LORA_RANKS[-1] else None


def _adapter_chain(model: str) -> LoraPolicy | None:
    from aries.core.models import resolve_model

    folder = adapter_folder(model)
    if folder is None:
        return None
    config = json.loads((folder / ADAPTER_CONFIG).read_text())
    if not _servable(config):
        return None
    base = resolve_model(config["base_model_name_or_path"])
    below = _adapter_chain(base) if Path(base).is_dir() else None
    if below is None:
        return LoraPolicy(base, (folder,), (int(config["r"]),))
    return LoraPolicy(below.base, (*below.adapters, folder), (*below.ranks, int(config["r"])))


def max_lora_rank(rank: int) -> int:
    """The smallest `max_lora_rank` vLLM accepts that holds an adapter of `rank`."""
    fits = [r for r in VLLM_LORA_RANKS if r >= rank]
    if not fits:
        from aries import AriesError

        raise AriesError(
            f"a LoRA policy of rank {rank} (the ranks of every iteration's adapter added up) is "
            f"beyond vLLM's largest max_lora_rank, {VLLM_LORA_RANKS[-1]}"
        )
    return fits[0]


def write_adapter(policy: LoraPolicy, folder: Path) -> Path:
    """`policy` as one adapter on `policy.base` in `folder` (its only adapter when it has one).

    Each adapter's A rows and scaled B columns are stacked, so the scale of the result is 1; a
    module that one adapter leaves out gets zero rows there.
    """
    import torch
    from safetensors.torch import load_file, save_file

    if len(policy.adapters) == 1:
        return policy.adapters[0]
    configs = [json.loads((a / ADAPTER_CONFIG).read_text()) for a in policy.adapters]
    weights = [load_file(str(a / ADAPTER_WEIGHTS)) for a in policy.adapters]
    modules = sorted({k[: -len(".lora_A.weight")] for w in weights for k in w if ".lora_A." in k})
    stacked = {}
    for module in modules:
        a_key, b_key = f"{module}.lora_A.weight", f"{module}.lora_B.weight"
        shape = next((w[a_key].shape[1], w[b_key].shape[0]) for w in weights if a_key in w)
        a_parts, b_parts = [], []
        for config, w, r in zip(configs, weights, policy.ranks):
            if a_key not in w:
                a_parts.append(torch.zeros(r, shape[0]))
                b_parts.append(torch.zeros(shape[1], r))
                continue
            scale = config["lora_alpha"] / (math.sqrt(r) if config.get("use_rslora") else r)
            a_parts.append(w[a_key].float())
            b_parts.append(w[b_key].float() * scale)
        dtype = next(w[a_key].dtype for w in weights if a_key in w)
        stacked[a_key] = torch.cat(a_parts, dim=0).to(dtype).contiguous()
        stacked[b_key] = torch.cat(b_parts, dim=1).to(dtype).contiguous()
    targets = sorted({m.rsplit(".", 1)[-1] for m in modules})
    config = dict(
        configs[-1],
        base_model_name_or_path=policy.base,
        r=policy.rank,
        lora_alpha=policy.rank,
        use_rslora=False,
        target_modules=targets,
    )
    folder.mkdir(parents=True, exist_ok=True)
    save_file(stacked, str(folder / ADAPTER_WEIGHTS))
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2))
    return folder


class LoraServers:
    """Managed vLLM servers kept for a whole run of LoRA policies (`train.lora`).

    Started once on the run's base model with LoRA enabled; each policy is then loaded as an
    adapter under a new name and the previous one unloaded: seconds, where a restart reloads
    the model (docs/scaling.md). A name is never reused, since vLLM would answer a reloaded name
    from prefix-cache entries of the old weights (vllm-project/vllm#42125). The servers restart
    only for a policy on another base (full weights, e.g. after `train.momentum`) or of a higher
    rank. `serve_command` must take vLLM's arguments at its end (--enable-lora is appended).
    """

    def __init__(
        self,
        serve_command: str,
        *,
        num_servers: int = 1,
        startup_timeout: float = 600.0,
        chat_template: str | None = None,
        rank: int = 16,
    ):
        import tempfile

        self.serve_command = serve_command
        self.num_servers = num_servers
        self.startup_timeout = startup_timeout
        self.chat_template = chat_template
        self.rank = max_lora_rank(min(rank, VLLM_LORA_RANKS[-1]))
        self.servers: list = []
        self.base: str | None = None
        self.context_length: int | None = None
        self.adapter: str | None = None
        """The adapter the servers hold now (None: the base model)."""
        self.loaded = 0
        """Adapters loaded so far: the next one's name takes the next number."""
        self._folder = Path(tempfile.mkdtemp(prefix="aries-lora-"))  # stacked adapters
        self._template_file = None

    def serve(self, model: str) -> str:
        """Have the servers answer for `model` (loading its adapter, or starting them on its
        base); returns the model name to request."""
        from aries.core.models import resolve_model

        path = resolve_model(model)
        policy = lora_policy(path)
        base = policy.base if policy is not None else path
        if base != self.base or (policy is not None and policy.rank > self.rank):
            self.rank = max(self.rank, max_lora_rank(policy.rank) if policy else 1)
            self._start(base)
        previous, name = self.adapter, base
        if policy is not None:
            self.loaded += 1
            name = f"aries-policy-{self.loaded}"
            adapter = write_adapter(policy, self._folder / name)
            self._post("load_lora_adapter", {"lora_name": name, "lora_path": str(adapter)})
        self.adapter = None if policy is None else name
        if previous is not None:
            self._post("unload_lora_adapter", {"lora_name": previous})
            shutil.rmtree(self._folder / previous, ignore_errors=True)
        return name

    def backend_options(self, model: str, options: dict) -> dict:
        """The `openai` backend's options for `model` on these servers (which it does not
        manage): the servers' URLs and the name to request instead of the managed settings."""
        name = self.serve(model)
        managed = ("serve_command", "num_servers", "startup_timeout", "chat_template")
        return {
            "context_length": self.context_length,  # vLLM lists it for the base model only
            **{k: v for k, v in options.items() if k not in managed},
            "base_urls": [server.base_url for server in self.servers],
            "served_model_name": name,
        }

    def _start(self, base: str) -> None:
        import httpx

        from aries.backends.servers import ManagedServer, template_file

        self._stop()
        if self.chat_template is not None and self._template_file is None:
            self._template_file = template_file(self.chat_template) or self.chat_template
        # Runtime adapter loading is off unless this variable says otherwise.
        command = (
            f"env VLLM_ALLOW_RUNTIME_LORA_UPDATING=True {self.serve_command} "
            f"--enable-lora --max-lora-rank {self.rank}"
        )
        self.servers = [
            ManagedServer(
                base,
                command_template=command,
                index=i,
                startup_timeout=self.startup_timeout,
                chat_template=self._template_file or "",
            )
            for i in range(self.num_servers)
        ]
        self.base = base
        for server in self.servers:
            server.launch()
        for server in self.servers:
            server.wait_ready()
        models = httpx.get(f"{self.servers[0].base_url}/models", timeout=60.0).json()["data"]
        self.context_length = next(
            (m.get("max_model_len") for m in models if m["id"] == base), None
        )

    def _post(self, path: str, body: dict) -> None:
        import httpx

        from aries import AriesError

        for server in self.servers:
            response = httpx.post(f"{server.base_url}/{path}", json=body, timeout=600.0)
            if response.status_code != 200:
                excerpt = " ".join(response.text.split())[:300]
                raise AriesError(
                    f"{server.base_url}/{path}: HTTP {response.status_code}: {excerpt}"
                )

    def _stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers, self.base, self.adapter = [], None, None

    def close(self) -> None:
        """Stop the servers and delete the stacked adapters."""
        self._stop()
        shutil.rmtree(self._folder, ignore_errors=True)
        if self._template_file and self._template_file != self.chat_template:
            Path(self._template_file).unlink(missing_ok=True)
