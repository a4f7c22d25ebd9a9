"""Model resolution and loading (aries/core/models.py)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from aries import AriesError
from aries.core import models
from aries.core.models import (
    EMBEDDED_FOLDER,
    cache_dir,
    embedded_model_path,
    load_causal_lm,
    load_tokenizer,
    native_bf16,
    resolve_dtype,
    resolve_model,
)


def _config_only(tmp_path: Path, tiny_model_path: Path) -> Path:
    folder = tmp_path / "no-weights"
    folder.mkdir()
    shutil.copy(tiny_model_path / "config.json", folder)
    return folder


def test_cache_dir_honours_aries_cache_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("ARIES_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("ARIES_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "aries"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "aries"


def test_embedded_conversion_goes_to_aries_cache_once(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ARIES_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_convert(gguf_file: Path, target: Path) -> Path:
        calls.append((gguf_file, target))
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")
        return target

    monkeypatch.setattr(models, "convert_gguf", fake_convert)
    expected = tmp_path / "cache" / EMBEDDED_FOLDER
    assert resolve_model("embedded") == str(expected)
    assert embedded_model_path() == expected
    assert len(calls) == 1  # the second call found the converted folder
    assert calls[0][0].name == "SmolLM2-135M-Instruct.Q4_1.gguf" and calls[0][0].is_file()
    assert "converting the embedded model" in capsys.readouterr().err


def test_local_model_folder(tiny_model_path):
    assert resolve_model(str(tiny_model_path)) == str(tiny_model_path)


def test_relative_model_folder(tiny_model_path, monkeypatch):
    monkeypatch.chdir(tiny_model_path.parent)
    assert resolve_model(tiny_model_path.name) == tiny_model_path.name


def test_adapter_folder_is_accepted_without_weights_check(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x"}))
    assert resolve_model(str(tmp_path)) == str(tmp_path)


def test_folder_without_weights_or_config(tmp_path, tiny_model_path):
    folder = _config_only(tmp_path, tiny_model_path)
    with pytest.raises(AriesError, match=r"no \*\.safetensors weights"):
        resolve_model(str(folder))
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(AriesError, match="safetensors only"):
        resolve_model(str(folder))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AriesError, match=r"not a model folder \(no config\.json\)"):
        resolve_model(str(empty))


@pytest.mark.parametrize("spec", ["./missing-model", "/nonexistent/model", "~/no/such/model"])
def test_missing_model_path(spec):
    with pytest.raises(AriesError, match="model folder not found"):
        resolve_model(spec)


def test_hub_id_shapes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == (
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    )
    for spec in ("not-a-model", "a/b/c"):
        with pytest.raises(AriesError, match="not a hub id of the form org/name"):
            resolve_model(spec)


def test_hub_id_offline_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AriesError, match=r"^no-such-org/no-such-model: cannot load model"):
        load_causal_lm("no-such-org/no-such-model")


def test_missing_and_broken_gguf(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ARIES_CACHE", str(tmp_path / "cache"))
    with pytest.raises(AriesError, match="GGUF file not found"):
        resolve_model(str(tmp_path / "missing.gguf"))
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF\x03\x00\x00\x00 truncated")
    with pytest.raises(AriesError) as error:
        resolve_model(str(broken))
    message = str(error.value)
    assert message.startswith(f"{broken}: cannot load GGUF file (") and "\n" not in message
    assert "converting broken.gguf" in capsys.readouterr().err
    # nothing half-converted is left to be trusted next time
    assert not (tmp_path / "cache" / "gguf" / "broken" / "config.json").exists()
    broken.write_text("not gguf at all")
    with pytest.raises(AriesError, match="cannot load GGUF file"):
        resolve_model(str(broken))


def test_gguf_uses_cached_conversion(tmp_path, monkeypatch, tiny_model_path):
    monkeypatch.setenv("ARIES_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"unused: the conversion is cached")
    target = tmp_path / "cache" / "gguf" / "model"
    shutil.copytree(tiny_model_path, target)
    assert resolve_model(str(gguf)) == str(target)


def test_corrupt_weights_are_one_clear_error(tmp_path, tiny_model_path):
    folder = _config_only(tmp_path, tiny_model_path)
    (folder / "model.safetensors").write_bytes(b"garbage, not safetensors")
    with pytest.raises(AriesError, match=r"no-weights: cannot load model \("):
        load_causal_lm(str(folder))
    (folder / "config.json").write_text("{broken")
    with pytest.raises(AriesError, match="cannot load model"):
        load_causal_lm(str(folder))


def test_load_tiny_model_and_tokenizer(tiny_model_path):
    import torch

    model = load_causal_lm(str(tiny_model_path), device="cpu")
    assert not model.training
    assert model.dtype == torch.float32
    assert model.config.num_hidden_layers == 2
    tokenizer = load_tokenizer(str(tiny_model_path))
    assert tokenizer.chat_template
    assert tokenizer.eos_token_id == model.config.eos_token_id


def test_folder_without_tokenizer(tmp_path, tiny_model_path):
    folder = tmp_path / "weights-only"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_path / name, folder)
    with pytest.raises(AriesError, match="cannot load tokenizer"):
        load_tokenizer(str(folder))


def test_resolve_dtype():
    import torch

    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(AriesError, match="unknown dtype 'fp8'"):
        resolve_dtype("fp8", "cpu")


def test_fast_dtype_is_bf16_exactly_on_cpus_with_bf16_instructions():
    """'fast' follows the CPU's own flags, read here from /proc/cpuinfo, not from torch."""
    import torch

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo on this system")
    flags = set(re.search(r"^flags\s*:(.*)$", cpuinfo.read_text(), re.M).group(1).split())
    native = bool(flags & {"avx512_bf16", "amx_bf16"})
    assert native_bf16("cpu") == native
    assert resolve_dtype("fast", "cpu") == (torch.bfloat16 if native else torch.float32)
    assert native_bf16("meta") is False
