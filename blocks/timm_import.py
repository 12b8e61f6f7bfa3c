"""timm checkpoints as archsweep models: a ViT / DeiT or MLP-Mixer state dict -> the
``ArchSpec`` it is, and that model built with its weights.

    arch, model = import_timm(load_checkpoint("deit_tiny_patch16_224.pth"))

Pure PyTorch; timm is not imported (the tests use it as the oracle). Everything is read
from the tensors' names and shapes:

- the family: ``patch_embed.*`` is timm's ``VisionTransformer`` (ViT, DeiT), ``stem.*``
  its ``MlpMixer``;
- width, input channels and patch size from the patch embedding ``(D, C, p, p)``; depth
  from the ``blocks.N`` indices; classes from ``head.weight``; the MLP width from
  ``blocks.0.mlp.fc1`` (Mixer: ``mlp_channels.fc1``, and the token-mixing width
  ``mlp_tokens.fc1``, archsweep's ``token_hidden``);
- a class token from ``cls_token`` (the head then reads it, timm's ``global_pool='token'``;
  without one, the mean of the final tokens); q/k/v biases from ``attn.qkv.bias``;
- the image size from the token grid (``pos_embed``, Mixer: ``mlp_tokens.fc1``), taken as
  square unless ``image_size`` is given;
- ``heads`` is not in a state dict: by default width / 64 (timm's ViT and DeiT, Ti to L,
  have 64-wide heads); give it for any other (timm's ViT-H/14 has 16 heads of 80). A wrong
  head count loads without complaint and computes something else.

LayerNorm epsilon is timm's 1e-6. timm's input normalisation (its ``pretrained_cfg`` mean
and std) is not in a state dict: the model takes images normalised as timm's would.

A checkpoint that fits no archsweep architecture (unknown keys, missing keys, shapes that
disagree with the inferred widths, a grid that does not fit) is refused with
``CheckpointError``, one line per problem naming the key, the shape found and the one
expected. Files are read with ``torch.load(weights_only=True)`` only: never unpickled.
"""

from __future__ import annotations

import math
import os
import pickle
import re
import stat
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch

from blocks.builder import build
from blocks.model import VisionModel
from blocks.spec import ArchSpec, EmbeddingSpec, MixerSpec, StageSpec

CHECKPOINT_BYTES = 4 << 30  # ViT-L/16's checkpoint takes 1.2 GB, ViT-H/14's 2.5 GB
HEAD_WIDTH = 64  # timm's ViT and DeiT heads: the default head count is width / 64
NORM_EPS = 1e-6  # timm's LayerNorm epsilon in ViT, DeiT and Mixer

Shape = tuple[int, ...]

# timm keys with no archsweep equivalent, and what they are (the refusal says so).
_NO_EQUIVALENT = {
    r"dist_token|head_dist\..*": "a distilled DeiT's distillation token and head; import the non-distilled model",
    r"reg_token": "register tokens",
    r"fc_norm\..*": "a norm after average pooling (timm's fc_norm); archsweep normalises before pooling",
    r"norm_pre\..*": "a norm before the blocks (CLIP's pre-norm)",
    r"(patch_embed|stem)\.norm\..*": "a norm in the patch embedding",
    r"blocks\.\d+\.ls\d\..*": "LayerScale",
    r"blocks\.\d+\.attn\.(q_norm|k_norm|norm)\..*": "a norm inside attention (qk_norm or scale_norm)",
    r"attn_pool\..*": "an attention-pooling head",
}

# Every key a family may hold (for the unknown keys of a checkpoint whose shapes could not
# even be read; once they are, the exact keys and shapes are compared).
_FAMILY_KEYS = {
    "vit": r"patch_embed\.proj\.(weight|bias)|cls_token|pos_embed|(norm|head)\.(weight|bias)"
    r"|blocks\.\d+\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)",
    "mixer": r"stem\.proj\.(weight|bias)|(norm|head)\.(weight|bias)"
    r"|blocks\.\d+\.(norm1|norm2|mlp_tokens\.fc[12]|mlp_channels\.fc[12])\.(weight|bias)",
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be an archsweep model; ``problems`` holds one line per reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def load_checkpoint(path: str | Path, limit: int = CHECKPOINT_BYTES) -> Mapping[str, torch.Tensor]:
    """The tensors of a ``.pth``/``.pt`` file, read with ``weights_only=True`` (tensors and
    plain containers only: a pickle naming any other object is refused, not run). Only a
    regular file of at most ``limit`` bytes, whose records hold at most ``limit`` bytes
    unpacked, is read (a FIFO, a device or a folder is refused, never waited on)."""
    with _open_regular(path, limit) as f:
        _check_records(f, path, limit)
        try:
            return torch.load(f, map_location="cpu", weights_only=True)
        except OSError as err:
            raise CheckpointError([f"{path}: cannot be read: {err.strerror or err}"]) from None
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, MemoryError) as err:
            reason = _torch_reason(err)
            raise CheckpointError(
                [
                    f"{path}: refused by torch.load(weights_only=True), which reads tensors and plain containers "
                    f"only: {reason} (a file you trust can be saved again as its state dict alone)"
                ]
            ) from None


def _torch_reason(err: Exception) -> str:
    """torch's message is mostly advice to unpickle anyway: only its reason, one line."""
    text = str(err)
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n|$)", text)
    if found:
        return found.group(1)
    advice = ("Weights only load failed", "Check the documentation")
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip() and not p.strip().startswith(advice)]
    return (paragraphs or [type(err).__name__])[0].split(". ")[0].splitlines()[0].removesuffix(".")


def _open_regular(path: str | Path, limit: int) -> BinaryIO:
    """``path`` opened for reading when it is a regular file (links followed) of at most
    ``limit`` bytes; checked on the open descriptor, opened without waiting on a writer."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError) as err:  # no such file, no permission, a NUL in the name
        raise CheckpointError([f"{path}: cannot be read: {getattr(err, 'strerror', None) or err}"]) from None
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode) or status.st_size > limit:
        os.close(fd)
        what = f"holds {_size(status.st_size)}" if stat.S_ISREG(status.st_mode) else _kind(status.st_mode)
        raise CheckpointError([f"{path} {what}; expected a checkpoint file of at most {_size(limit)}"])
    return os.fdopen(fd, "rb")


def _kind(mode: int) -> str:  # runs.files.kind's words; blocks imports nothing of runs
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)")):
        if test(mode):
            return f"is {name}"
    return "is a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "is not a regular file"


def _size(n: int) -> str:
    return f"{n / 2**30:,.1f} GB" if n >= 2**30 else f"{n / 2**20:,.1f} MB"


def _check_records(f: BinaryIO, path: str | Path, limit: int) -> None:
    """Refuse a zip checkpoint (torch.save's format) whose records unpack past ``limit``:
    torch stores them as they are, but reads deflated ones too, 1,000 times their size."""
    if not zipfile.is_zipfile(f):
        f.seek(0)
        return  # the legacy format, or not a checkpoint: torch.load says which
    try:
        unpacked = sum(info.file_size for info in zipfile.ZipFile(f).infolist())
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise CheckpointError([f"{path}: not a readable checkpoint ({err})"]) from None
    if unpacked > limit:
        raise CheckpointError(
            [f"{path}: its records unpack to {_size(unpacked)}; a checkpoint to {_size(limit)} at most"]
        )
    f.seek(0)


def state_dict_of(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """The state dict in a checkpoint: itself, or under ``model`` or ``state_dict`` (DeiT's
    releases), less a ``module.`` prefix on every key (saved from DistributedDataParallel)."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError([f"checkpoint: found a {type(checkpoint).__name__}, expected a mapping of tensors"])
    for wrapper in ("model", "state_dict"):
        if isinstance(checkpoint.get(wrapper), Mapping):
            checkpoint = checkpoint[wrapper]
            break
    state = dict(checkpoint)
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


@dataclass
class _Layout:
    """What a checkpoint must hold for the architecture inferred from it: each timm key's
    shape, why (for the refusal), and the archsweep keys it fills (with the rows each takes)."""

    shapes: dict[str, Shape] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    targets: dict[str, list[tuple[str, slice]]] = field(default_factory=dict)

    def add(self, key: str, shape: Shape, target: str | list[tuple[str, slice]], note: str) -> None:
        self.shapes[key], self.notes[key] = shape, note
        self.targets[key] = [(target, slice(None))] if isinstance(target, str) else target

    def linear(self, timm: str, ours: str, out: int, into: int, note: str) -> None:
        self.add(f"{timm}.weight", (out, into), f"{ours}.weight", note)
        self.add(f"{timm}.bias", (out,), f"{ours}.bias", note)

    def norm(self, timm: str, ours: str, width: int) -> None:
        for part in ("weight", "bias"):
            self.add(f"{timm}.{part}", (width,), f"{ours}.{part}", f"width {width}")


def import_timm(
    checkpoint: Mapping,
    *,
    heads: int | None = None,
    image_size: int | tuple[int, int] | None = None,
) -> tuple[ArchSpec, VisionModel]:
    """The ``ArchSpec`` of a timm ViT / DeiT or MLP-Mixer checkpoint and that model with
    its weights (fp32, on the CPU). ``heads``: the attention heads (default width / 64);
    ``image_size``: ``(H, W)`` for a grid that is not square. Raises ``CheckpointError``."""
    state = state_dict_of(checkpoint)
    problems = [f"{k!r}: found a {type(k).__name__} key, expected a string" for k in state if not isinstance(k, str)]
    problems += [f"{k}: found a {type(v).__name__}, expected a tensor" for k, v in state.items() if not _tensor(v)]
    problems += [
        f"{k}: found dtype {v.dtype}, expected a floating-point tensor"
        for k, v in state.items()
        if _tensor(v) and not v.is_floating_point()
    ]
    if problems:
        raise CheckpointError(problems)
    size = None if image_size is None else ((image_size,) * 2 if isinstance(image_size, int) else tuple(image_size))
    if "patch_embed.proj.weight" in state:
        family, (arch, layout) = "vit", _vit(state, heads, size, problems)
    elif "stem.proj.weight" in state:
        family, (arch, layout) = "mixer", _mixer(state, size, problems)
        if heads is not None:
            problems.append(f"heads: found {heads!r}, expected none: an MLP-Mixer has no attention heads")
    else:
        raise CheckpointError(
            [
                "patch_embed.proj.weight (ViT, DeiT) or stem.proj.weight (MLP-Mixer): missing, expected one of them "
                "(D, C, p, p); not a timm ViT, DeiT or MLP-Mixer state dict"
            ]
        )
    if layout is not None:
        problems += _compare(state, layout)
    else:
        problems += [_unknown(k, v) for k, v in state.items() if not re.fullmatch(_FAMILY_KEYS[family], k)]
    if problems or arch is None or layout is None:
        raise CheckpointError(problems)
    return arch, _load(arch, state, layout)


def _tensor(value: object) -> bool:
    return isinstance(value, torch.Tensor)


def _shape(state: Mapping[str, torch.Tensor], key: str) -> Shape | None:
    return tuple(state[key].shape) if key in state else None


def _needed(state, key: str, rank: int, what: str, problems: list[str]) -> Shape | None:
    """The shape of a key the architecture is inferred from, or None after a problem."""
    shape = _shape(state, key)
    if shape is None:
        problems.append(f"{key}: missing, expected {what}")
    elif len(shape) != rank:
        problems.append(f"{key}: found {shape}, expected {what}")
    else:
        return shape
    return None


def _embedding(state, key: str, problems: list[str]) -> tuple[int, int, int] | None:
    """``(width, channels, patch)`` from a patch-embedding conv ``(D, C, p, p)``."""
    shape = _needed(state, key, 4, "(D, C, p, p): a patch embedding", problems)
    if shape is None:
        return None
    if shape[2] != shape[3]:
        problems.append(f"{key}: found {shape}, expected (D, C, p, p): a square patch")
        return None
    return shape[0], shape[1], shape[2]


def _depth(state, problems: list[str]) -> int:
    indices = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    if not indices:
        problems.append("blocks.0: missing, expected at least one block (blocks.N.*)")
        return 0
    return max(indices) + 1  # a gap in the indices shows as that block's missing keys


def _grid(tokens: int, patch: int, image_size, key: str, found: Shape, want: str, problems, hint: str = ""):
    """The image size ``(H, W)`` whose patch grid has ``tokens`` tokens: square, or
    ``image_size``; None after a problem (``hint`` ends the one of a grid that is not square)."""
    if image_size is not None:
        H, W = image_size
        if H % patch or W % patch:
            problems.append(f"image_size: {H}x{W} is not a multiple of the patch size {patch}")
            return None
        if (H // patch) * (W // patch) != tokens:
            problems.append(
                f"{key}: found {found}, expected {want} with {(H // patch) * (W // patch)} tokens "
                f"(image_size {H}x{W} at patch {patch})"
            )
            return None
        return (H, W)
    side = math.isqrt(tokens)
    if side * side != tokens:
        problems.append(
            f"{key}: found {found}, expected {want} with a square grid; {tokens} tokens are not square: "
            f"give image_size (H, W){hint}"
        )
        return None
    return (side * patch, side * patch)


def _heads(width: int, heads: int | None, problems: list[str]) -> int | None:
    if heads is None:
        if width % HEAD_WIDTH:
            problems.append(
                f"heads: width {width} is not a multiple of {HEAD_WIDTH} (timm's head width) and the state dict "
                "does not record the head count: give heads"
            )
            return None
        return width // HEAD_WIDTH
    if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1 or width % heads:
        problems.append(f"heads: found {heads!r}, expected a positive integer dividing the width {width}")
        return None
    return heads


def _mlp_ratio(width: int, hidden: int, key: str, problems: list[str]) -> float:
    ratio = hidden / width
    if round(width * ratio) != hidden:  # the builder's MLP width is round(width * mlp_ratio)
        problems.append(f"{key}: MLP width {hidden} at width {width} is not expressible as an mlp_ratio")
    return ratio


def _head(state, width: int, problems: list[str]) -> int | None:
    shape = _needed(state, "head.weight", 2, f"(classes, {width}): the classifier", problems)
    return None if shape is None else shape[0]


def _vit(state, heads, image_size, problems) -> tuple[ArchSpec | None, _Layout | None]:
    """timm's VisionTransformer: patch_embed, cls_token, pos_embed, blocks.N.{norm1, attn.qkv,
    attn.proj, norm2, mlp.fc1, mlp.fc2}, norm, head."""
    embedding = _embedding(state, "patch_embed.proj.weight", problems)
    depth = _depth(state, problems)
    if embedding is None or not depth:
        return None, None
    D, C, p = embedding
    fc1 = _needed(state, "blocks.0.mlp.fc1.weight", 2, f"(hidden, {D}): the MLP", problems)
    classes = _head(state, D, problems)
    heads = _heads(D, heads, problems)
    prefix = int("cls_token" in state)
    pos = _shape(state, "pos_embed")
    size = _vit_size(pos, prefix, D, p, image_size, problems)
    if fc1 is None or classes is None or heads is None or size is None:
        return None, None
    hidden = fc1[0]
    qkv_bias = "blocks.0.attn.qkv.bias" in state
    mixer = MixerSpec("attention", {"heads": heads, "qkv_bias": qkv_bias})
    stage = StageSpec(depth=depth, width=D, mixer=mixer, mlp_ratio=_mlp_ratio(D, hidden, "blocks.0.mlp.fc1", problems))
    arch = ArchSpec(
        size,
        classes,
        (stage,),
        in_channels=C,
        embedding=EmbeddingSpec("patch", p),
        positional="learned" if pos is not None else "none",
        head="cls" if prefix else "gap",
        norm_eps=NORM_EPS,
    )
    tokens = (size[0] // p) * (size[1] // p)
    layout = _Layout()
    _embedding_layout(layout, "patch_embed.proj", D, C, p)
    if prefix:
        layout.add("cls_token", (1, 1, D), "cls_token", f"width {D}")
    if pos is not None:
        layout.add("pos_embed", (1, prefix + tokens, D), "positional.table", f"{prefix} + {tokens} tokens, width {D}")
    mlp = f"width {D}, MLP {hidden} (blocks.0.mlp.fc1.weight)"
    for i in range(depth):
        t, ours = f"blocks.{i}", f"stages.0.blocks.{i}"
        layout.norm(f"{t}.norm1", f"{ours}.norm1", D)
        # timm's fused (3D, D) q/k/v rows: q, then k, then v; archsweep's to_kv is k then v.
        q, kv = slice(0, D), slice(D, 3 * D)
        for part in ("weight", "bias") if qkv_bias else ("weight",):
            targets = [(f"{ours}.mixer.qkv.to_q.{part}", q), (f"{ours}.mixer.qkv.to_kv.{part}", kv)]
            shape = (3 * D, D) if part == "weight" else (3 * D,)
            bias = "q/k/v biases as blocks.0" if part == "bias" else "q, k and v"
            layout.add(f"{t}.attn.qkv.{part}", shape, targets, f"width {D}, {bias}")
        layout.linear(f"{t}.attn.proj", f"{ours}.mixer.to_out", D, D, f"width {D}")
        layout.norm(f"{t}.norm2", f"{ours}.norm2", D)
        layout.linear(f"{t}.mlp.fc1", f"{ours}.mlp.0", hidden, D, mlp)
        layout.linear(f"{t}.mlp.fc2", f"{ours}.mlp.3", D, hidden, mlp)
    _head_layout(layout, D, classes)
    return arch, layout


def _vit_size(pos: Shape | None, prefix: int, D: int, p: int, image_size, problems) -> tuple[int, int] | None:
    """The image size of a ViT: from its position table ``(1, prefix + h*w, D)``, or given."""
    if pos is None:  # timm's pos_embed='none': the image size only from the caller
        if image_size is None:
            problems.append(f"pos_embed: missing, expected (1, {prefix} + tokens, {D}); or give image_size (H, W)")
        elif image_size[0] % p or image_size[1] % p:
            problems.append(f"image_size: {image_size[0]}x{image_size[1]} is not a multiple of the patch size {p}")
        else:
            return image_size
        return None
    if len(pos) != 3 or pos[1] <= prefix:
        problems.append(f"pos_embed: found {pos}, expected (1, {prefix} + tokens, {D})")
        return None
    want = f"(1, {prefix} + h*w, {D})" + (" (one position for the class token too)" if prefix else "")
    side, hint = math.isqrt(pos[1]), ""
    if prefix and side * side == pos[1]:
        hint = (
            f"; or, if its {pos[1]} rows are a {side}x{side} grid with no position for the class token "
            "(timm's no_embed_class), archsweep has no equivalent of that"
        )
    return _grid(pos[1] - prefix, p, image_size, "pos_embed", pos, want, problems, hint)


def _mixer(state, image_size, problems) -> tuple[ArchSpec | None, _Layout | None]:
    """timm's MlpMixer: stem, blocks.N.{norm1, mlp_tokens.fc1/fc2, norm2, mlp_channels.fc1/fc2},
    norm, head. No class token and no position table; the head averages the tokens."""
    embedding = _embedding(state, "stem.proj.weight", problems)
    depth = _depth(state, problems)
    if embedding is None or not depth:
        return None, None
    D, C, p = embedding
    token_fc1 = _needed(state, "blocks.0.mlp_tokens.fc1.weight", 2, "(token_hidden, tokens): token mixing", problems)
    fc1 = _needed(state, "blocks.0.mlp_channels.fc1.weight", 2, f"(hidden, {D}): the channel MLP", problems)
    classes = _head(state, D, problems)
    size = None
    if token_fc1 is not None:
        want = "(token_hidden, h*w)"
        size = _grid(token_fc1[1], p, image_size, "blocks.0.mlp_tokens.fc1.weight", token_fc1, want, problems)
    if fc1 is None or classes is None or size is None or token_fc1 is None:
        return None, None
    token_hidden, tokens, hidden = token_fc1[0], token_fc1[1], fc1[0]
    mixer = MixerSpec("mlp_mixer", {"token_hidden": token_hidden})
    ratio = _mlp_ratio(D, hidden, "blocks.0.mlp_channels.fc1", problems)
    stage = StageSpec(depth=depth, width=D, mixer=mixer, mlp_ratio=ratio)
    arch = ArchSpec(
        size,
        classes,
        (stage,),
        in_channels=C,
        embedding=EmbeddingSpec("patch", p),
        positional="none",
        head="gap",
        norm_eps=NORM_EPS,
    )
    layout = _Layout()
    _embedding_layout(layout, "stem.proj", D, C, p)
    token_note = f"{tokens} tokens, token MLP {token_hidden} (blocks.0.mlp_tokens.fc1.weight)"
    mlp = f"width {D}, MLP {hidden} (blocks.0.mlp_channels.fc1.weight)"
    for i in range(depth):
        t, ours = f"blocks.{i}", f"stages.0.blocks.{i}"
        layout.norm(f"{t}.norm1", f"{ours}.norm1", D)
        layout.linear(f"{t}.mlp_tokens.fc1", f"{ours}.mixer.net.0", token_hidden, tokens, token_note)
        layout.linear(f"{t}.mlp_tokens.fc2", f"{ours}.mixer.net.3", tokens, token_hidden, token_note)
        layout.norm(f"{t}.norm2", f"{ours}.norm2", D)
        layout.linear(f"{t}.mlp_channels.fc1", f"{ours}.mlp.0", hidden, D, mlp)
        layout.linear(f"{t}.mlp_channels.fc2", f"{ours}.mlp.3", D, hidden, mlp)
    _head_layout(layout, D, classes)
    return arch, layout


def _embedding_layout(layout: _Layout, timm: str, D: int, C: int, p: int) -> None:
    note = f"width {D}, {C} channels, patch {p}"
    layout.add(f"{timm}.weight", (D, C, p, p), "embed.proj.weight", note)
    layout.add(f"{timm}.bias", (D,), "embed.proj.bias", note)


def _head_layout(layout: _Layout, D: int, classes: int) -> None:
    layout.norm("norm", "norm", D)
    layout.linear("head", "head", classes, D, f"{classes} classes (head.weight), width {D}")


def _compare(state: Mapping[str, torch.Tensor], layout: _Layout) -> list[str]:
    """One line per unknown key, missing key and shape that is not the expected one."""
    problems = [_unknown(key, tensor) for key, tensor in state.items() if key not in layout.shapes]
    for key, shape in layout.shapes.items():
        found = _shape(state, key)
        if found is None:
            problems.append(f"{key}: missing, expected {shape} ({layout.notes[key]})")
        elif found != shape:
            problems.append(f"{key}: found {found}, expected {shape} ({layout.notes[key]})")
    return problems


def _unknown(key: str, tensor: torch.Tensor) -> str:
    what = next((why for pattern, why in _NO_EQUIVALENT.items() if re.fullmatch(pattern, key)), None)
    hint = f": {what}, which archsweep has no equivalent of" if what else ""
    return f"{key}: found {tuple(tensor.shape)}, expected no such key{hint}"


def _load(arch: ArchSpec, state: Mapping[str, torch.Tensor], layout: _Layout) -> VisionModel:
    # Built on the meta device (no random initialisation of weights about to be replaced),
    # then given the checkpoint's tensors, copied to fp32 on the CPU.
    model = build(arch, device="meta")
    ours = {
        name: state[key][rows].detach().to("cpu", torch.float32, copy=True).contiguous()
        for key, targets in layout.targets.items()
        for name, rows in targets
    }
    model.load_state_dict(ours, strict=True, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:  # a tensor the layout did not fill: a bug here, not the checkpoint's fault
        raise RuntimeError(f"timm import left {', '.join(left)} unset")
    return model
