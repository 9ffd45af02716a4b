"""The recipe's schema: every section and every method's options, validated by pydantic.

This module is the recipe's vocabulary and nothing else: it imports no torch (validating a
recipe is instant) and only the name registries of data sets, backbones and pretext tasks,
which are themselves torch-free. Reading files, inheritance and ``--set`` overrides live
in :mod:`hssl_cli.recipe`.

Unknown keys are errors, with a suggestion, because a silently ignored typo
(``train.epocs``) wastes a GPU day. Each method's options are one class here, registered
in ``METHOD_CONFIGS``; shared options (projector, fiber bundle, readout, augmentation)
are declared once, in the mixins below, and a method lists the ones it uses.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from hssl_cli.data import DATASETS, NATIVE_SHAPES, STREAMABLE
from hssl_cli.errors import clip
from hssl_cli.groups import GROUP_NAME_HELP, AnyGroup, check_group_name, get_group
from hssl_cli.models import BACKBONE_CHECKS, BACKBONES, feature_map_side
from hssl_cli.objectives import PRETEXT_TASKS
from hssl_cli.scale_group import DEFAULT_SCALE_STEP

# A number: an int or a float, finite. Not ``true`` (YAML's booleans are ints to Python)
# nor a string such as "0.1", which a lax float would take without a word.
Real = Annotated[float, Strict(), AllowInfNan(False)]

# Upper bounds far above any run a machine can hold, so that a slip (a width of 10**30, an
# image side of a million) is refused at validation rather than crashing an allocation.
MAX_IMAGE_SIDE = 4096
MAX_FIELDS = 4096  # regular fields of one backbone stage
MAX_STAGES = 12
MAX_WIDTH = 65_536  # widths of heads and projectors
MAX_BATCH = 65_536
MAX_COUNT = 10**9  # images, steps, epochs
MAX_SEED = 2**32 - 1  # numpy's and most libraries' seed range


def check_registered(kind: str, name: str, registry: Iterable[str]) -> str:
    """One message for every registry lookup: the unknown name, a close match, the choices."""
    known = sorted(registry)
    if name in known:
        return name
    close = difflib.get_close_matches(clip(str(name)), known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"unknown {kind} {clip(repr(name))}; {hint}known: {', '.join(known)}")


def registered(kind: str, registry: Iterable[str]) -> AfterValidator:
    """A field validator: the value must be a name in ``registry`` (see check_registered)."""
    return AfterValidator(lambda name: check_registered(kind, name, registry))


def error_key(error: dict[str, Any]) -> list[str]:
    """The recipe key of one pydantic error, without list indices and union tags."""
    parts: list[str] = []
    for part in error["loc"]:
        if isinstance(part, int):
            continue
        if parts and parts[-1] in ("method", "base_method") and part in METHOD_CONFIGS:
            continue  # the discriminated union's tag
        parts.append(str(part))
    return parts


def describe_error(error: dict[str, Any], known_keys: list[str], noun: str = "recipe") -> str:
    """One line for one pydantic error, the wording of every file hssl validates.

    ``known_keys`` are the keys accepted where an unknown key was found, for the hint.
    """
    parts = error_key(error) or [str(part) for part in error["loc"]] or [""]
    key = clip(".".join(parts))
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(parts[-1], known_keys, n=1, cutoff=0.6)
        if close:
            hint = f"did you mean '{clip('.'.join([*parts[:-1], close[0]]))}'?"
        else:
            hint = f"known keys here: {', '.join(known_keys)}"
        return f"unknown {noun} key '{key}'; {hint}"
    message = clip(error["msg"].removeprefix("Value error, "), 300)
    given = error.get("input")
    shown = f" (got {_shown(given)})" if given is not None and not isinstance(given, dict) else ""
    if not key:
        return message
    return f"bad {noun} value for '{key}': {message}{shown}"


def _shown(value: Any) -> str:
    """A value's repr for an error line, cut short (values are bounded: see safe_yaml)."""
    try:
        return clip(repr(value))
    except ValueError:  # an int too long for str()
        return f"a {type(value).__name__} too long to show"


def first_error(err: ValidationError) -> tuple[dict[str, Any], str]:
    """The first error of ``err`` and a ``(and N more problems)`` suffix."""
    errors = err.errors(include_url=False)
    more = len(errors) - 1
    return errors[0], (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


class Section(BaseModel):
    """Base of every recipe section: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ------------------------------------------------------------------ data, model


RESCALE_HELP = (
    "data.rescale must be [low, high] with 0 < low <= high <= 1 (it only shrinks, e.g. [0.3, 1.0])"
)


class DataConfig(Section):
    name: Annotated[str, registered("data set", DATASETS)] = Field(
        "digits", description=f"The data set: {', '.join(sorted(DATASETS))}."
    )
    root: str | None = Field(
        None, description="Folder holding the data set's files (torchvision sets, imagefolder)."
    )
    download: StrictBool = Field(
        False, description="Let torchvision download a missing data set into data.root."
    )
    image_size: StrictInt | None = Field(
        default=None,
        gt=0,
        le=MAX_IMAGE_SIDE,
        description="Resize images to this side in pixels; null: native.",
    )
    path: str | None = Field(None, description="npz: the .npz file with x (images), y (labels).")
    test_path: str | None = Field(
        None, description="npz: a separate test .npz; null splits data.path (test_fraction)."
    )
    limit_train: StrictInt | None = Field(
        default=None,
        gt=0,
        le=MAX_COUNT,
        description="Train on a fixed random subset this large; null: all.",
    )
    limit_test: StrictInt | None = Field(
        default=None,
        gt=0,
        le=MAX_COUNT,
        description="Test on a fixed random subset this large; null: all.",
    )
    test_fraction: Real = Field(
        default=0.2,
        gt=0.0,
        lt=1.0,
        description="digits, npz without test_path: the share held out for testing (stratified).",
    )
    in_memory: Literal["auto", True, False] = Field(
        "auto",
        description="imagefolder: decode into memory (true), stream from disk (false), "
        "or stream when it would not fit (auto).",
    )
    workers: StrictInt = Field(
        default=4, ge=0, le=256, description="imagefolder: DataLoader processes that decode images."
    )
    rescale: tuple[Real, Real] | None = Field(
        None,
        description="Shrink each image about its centre by its own fixed random factor in "
        "[low, high], padding with zeros (SESN's MNIST-scale); null: no rescaling.",
    )

    @field_validator("rescale", mode="before")
    @classmethod
    def _rescale_pair(cls, value: Any) -> Any:
        if value is not None and not (isinstance(value, list | tuple) and len(value) == 2):
            raise ValueError(RESCALE_HELP)
        return value

    @field_validator("rescale")
    @classmethod
    def _rescale_range(cls, scale: tuple[float, float] | None) -> tuple[float, float] | None:
        if scale is not None and not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(RESCALE_HELP)
        return scale

    @field_validator("in_memory", mode="before")
    @classmethod
    def _bool_not_number(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError("data.in_memory is auto, true or false")
        return value

    @field_validator("root", "path", "test_path")
    @classmethod
    def _usable_path(cls, path: str | None) -> str | None:
        if path is not None and "\0" in path:
            raise ValueError("a path cannot hold a NUL character")
        return path

    @model_validator(mode="after")
    def _streams_only_folders(self) -> DataConfig:
        if self.in_memory is False and self.name not in STREAMABLE:
            raise ValueError(
                f"data.in_memory=false streams only {', '.join(sorted(STREAMABLE))}; "
                f"{self.name} is always loaded into memory: drop data.in_memory"
            )
        return self

    @model_validator(mode="after")
    def _rescale_loaded_sets(self) -> DataConfig:
        # imagefolder's batches are decoded (or streamed) outside load_images, which rescales.
        if self.rescale is not None and self.name in STREAMABLE:
            raise ValueError(
                f"data.rescale is not supported with {self.name} (whether streamed from disk "
                "or decoded into memory, with any data.in_memory); convert the images to an "
                "npz (data.name: npz) or drop data.rescale"
            )
        return self


class ModelConfig(Section):
    backbone: Annotated[str, registered("backbone", BACKBONES)] = Field(
        "cnn", description=f"The backbone: {', '.join(sorted(BACKBONES))}."
    )
    group: str = Field("rot4", description=f"The symmetry group: {GROUP_NAME_HELP}.")
    structure: Literal["equivariant", "unstructured"] = Field(
        "equivariant",
        description="escnn layers (equivariant) or plain ones of the same shapes (the control).",
    )
    widths: list[Annotated[StrictInt, Field(ge=1, le=MAX_FIELDS)]] = Field(
        default_factory=lambda: [8, 16, 32],
        min_length=1,
        max_length=MAX_STAGES,
        description="cnn, sesn_cnn: regular (or scale) fields per stage (channels = width x |G|).",
    )
    convs_per_stage: StrictInt = Field(
        default=1,
        ge=1,
        le=64,
        description="cnn, sesn_cnn: convolutions (each with batch norm, ReLU) per stage.",
    )
    # escnn's kernel basis grows with the kernel's area: 15 keeps building it in seconds.
    kernel_size: StrictInt = Field(
        default=3, ge=1, le=15, description="Convolution kernel side (odd)."
    )
    group_pool: Literal["max", "mean"] = Field(
        "max", description="How the invariant features pool the group axis."
    )
    # See hssl_cli/models/equivariant_resnet.py.
    resnet_width: Literal["params", "activations"] = Field(
        "params",
        description="e2resnet18, sesn_resnet18: match ResNet-18's parameter count or its "
        "activations per stage.",
    )
    width_multiplier: Real = Field(
        default=1.0, gt=0, le=64, description="ResNet backbones: scale every stage's width."
    )
    scale_step: Real = Field(
        default=DEFAULT_SCALE_STEP,
        gt=1,
        le=4,
        description="Scale groups: the ratio q between neighbouring scales (SESN: sqrt 2).",
    )
    min_scale: Real = Field(
        default=0.9,
        gt=0,
        le=8,
        description="sesn backbones: the finest basis width sigma_0 in pixels.",
    )
    basis_size: StrictInt = Field(
        default=3,
        ge=1,
        le=8,
        description="sesn backbones: Hermite orders per axis (basis_size^2 basis functions).",
    )
    scale_size: StrictInt = Field(
        default=1,
        ge=1,
        le=16,
        description="sesn backbones: neighbouring scales each group convolution mixes.",
    )

    @field_validator("group")
    @classmethod
    def _known_group(cls, name: str) -> str:
        check_group_name(name)
        return name

    @model_validator(mode="after")
    def _backbone_accepts(self) -> ModelConfig:
        check = BACKBONE_CHECKS.get(self.backbone)
        if check is not None:
            check(self)
        return self

    @field_validator("kernel_size")
    @classmethod
    def _odd_kernel(cls, size: int) -> int:
        if size % 2 == 0:
            raise ValueError(
                "kernel_size must be odd so that rotations map the kernel grid onto itself"
            )
        return size


# ------------------------------------------------------------------ augmentation


class AugmentConfig(Section):
    """Base (non-group) augmentations, SimCLR's CIFAR pipeline by default (Chen et al. 2020)."""

    crop_scale: tuple[Real, Real] = Field(
        (0.2, 1.0), description="Random resized crop: the range of its area (share of the image)."
    )
    crop_ratio: tuple[Real, Real] = Field(
        (3 / 4, 4 / 3), description="Random resized crop: the range of its aspect ratio."
    )
    hflip: Real = Field(default=0.5, ge=0, le=1, description="Probability of a horizontal flip.")
    jitter: tuple[Real, Real, Real, Real] = Field(
        (0.4, 0.4, 0.4, 0.1),
        description="Colour jitter strengths: brightness, contrast, saturation, hue.",
    )
    jitter_p: Real = Field(default=0.8, ge=0, le=1, description="Probability of colour jitter.")
    grayscale: Real = Field(
        default=0.2, ge=0, le=1, description="Probability of turning a colour image grey."
    )
    group_element: StrictBool = Field(
        False, description="Transform each view by a random element of model.group."
    )

    @field_validator("crop_scale")
    @classmethod
    def _scale_range(cls, scale: tuple[float, float]) -> tuple[float, float]:
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError("crop_scale must be [min, max] with 0 < min <= max <= 1")
        return scale

    @field_validator("crop_ratio")
    @classmethod
    def _ratio_range(cls, ratio: tuple[float, float]) -> tuple[float, float]:
        if not 0 < ratio[0] <= ratio[1] or ratio[1] / ratio[0] > 1e6:
            raise ValueError(
                "crop_ratio must be [min, max] width/height ratios with 0 < min <= max "
                "(e.g. [0.75, 1.333])"
            )
        return ratio

    @field_validator("jitter")
    @classmethod
    def _jitter_strengths(
        cls, jitter: tuple[float, float, float, float]
    ) -> tuple[float, float, float, float]:
        if min(jitter) < 0 or jitter[3] > 0.5:
            raise ValueError(
                "jitter is [brightness, contrast, saturation, hue], each >= 0, hue <= 0.5 "
                "(a hue shift of half the colour wheel)"
            )
        return jitter


class ExtendedAugmentConfig(AugmentConfig):
    """``AugmentConfig`` plus BYOL's Gaussian blur and solarization and a random jitter order.

    BYOL (Grill et al. 2020), and EquiMod on BYOL, add blur and solarization to SimCLR's
    pipeline; torchvision's ColorJitter shuffles its four operations per image, which
    ``jitter_order: random`` reproduces. Every default leaves the base pipeline as
    ``AugmentConfig`` has it.
    """

    jitter_order: Literal["fixed", "random"] = Field(
        "fixed", description="Colour jitter's order: fixed, or random per image (torchvision's)."
    )
    blur: Real = Field(default=0.0, ge=0, le=1, description="Probability of a Gaussian blur.")
    blur_sigma: tuple[Real, Real] = Field(
        (0.1, 2.0), description="The range of the blur's standard deviation, in pixels."
    )
    blur_kernel_size: StrictInt | None = Field(
        default=None,
        ge=1,
        le=2 * MAX_IMAGE_SIDE - 1,
        description="Blur kernel side (odd); null: about 10% of the image.",
    )
    solarize: Real = Field(default=0.0, ge=0, le=1, description="Probability of solarization.")
    solarize_threshold: Real = Field(
        default=0.5, ge=0, le=1, description="Solarization inverts pixels at or above this."
    )

    @field_validator("blur_sigma")
    @classmethod
    def _sigma_range(cls, sigma: tuple[float, float]) -> tuple[float, float]:
        if not 0 < sigma[0] <= sigma[1]:
            raise ValueError("blur_sigma must be [min, max] with 0 < min <= max")
        return sigma

    @field_validator("blur_kernel_size")
    @classmethod
    def _odd_kernel(cls, size: int | None) -> int | None:
        if size is not None and size % 2 == 0:
            raise ValueError("blur_kernel_size must be odd (or null for about 10% of the image)")
        return size


# ------------------------------------------------------------------ optimiser, training, probe


class OptimConfig(Section):
    name: Literal["sgd", "adamw"] = Field("adamw", description="The optimiser.")
    lr: Real = Field(
        default=1e-3, gt=0, description="Peak learning rate (linear warm-up, then cosine decay)."
    )
    weight_decay: Real = Field(default=1e-4, ge=0, description="Weight decay.")
    # Off as in solo-learn and lightly; true restores hssl 0.1's behaviour.
    decay_norm_and_bias: StrictBool = Field(
        False, description="Decay norm-layer and bias parameters too."
    )
    momentum: Real = Field(default=0.9, ge=0, lt=1, description="sgd: momentum.")
    warmup_epochs: Real = Field(
        default=0.0,
        ge=0,
        le=MAX_COUNT,
        description="Epochs of linear learning-rate warm-up (may be fractional).",
    )
    min_lr_ratio: Real = Field(
        default=0.0, ge=0, le=1, description="The cosine decay ends at this share of optim.lr."
    )


class TrainConfig(Section):
    epochs: StrictInt = Field(
        default=10,
        ge=0,
        le=MAX_COUNT,
        description="Passes over the data; 0 saves the random-init encoder.",
    )
    # With N processes each takes batch_size / N, so a recipe means the same on one device
    # or eight.
    batch_size: StrictInt = Field(
        default=128,
        ge=2,
        le=MAX_BATCH,
        description="The global batch, split evenly over the processes.",
    )
    grad_clip: Real | None = Field(
        default=None, gt=0, description="Clip the gradients' global norm to this; null: no clip."
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="Autocast precision of the forward pass (losses stay fp32)."
    )
    channels_last: StrictBool = Field(
        False, description="Weights and batches in channels-last layout."
    )
    compile: StrictBool = Field(False, description="torch.compile the backbone.")
    checkpoint_every_steps: StrictInt | None = Field(
        default=None,
        ge=1,
        description="Also save the training state every this many steps within an epoch "
        "(and on SIGTERM/SIGINT/SIGUSR1), so --resume continues mid-epoch; null: epoch ends only.",
    )
    # escnn's batch norms included. No effect in one process.
    sync_batchnorm: StrictBool | None = Field(
        None,
        description="Batch-norm statistics over the global batch with several processes "
        "(null or true: on; false: per process).",
    )
    # jsonl is always written: a list without it gets it added (hssl_cli/training/run_log.py).
    log: list[Literal["jsonl", "tensorboard"]] = Field(
        default_factory=lambda: ["jsonl"],
        description="Metric logs: jsonl (metrics.jsonl, always) and tensorboard (event files "
        "in the run folder).",
    )

    @field_validator("log", mode="before")
    @classmethod
    def _log_list(cls, kinds: Any) -> Any:
        return [kinds] if isinstance(kinds, str) else kinds

    @field_validator("log")
    @classmethod
    def _jsonl_always(cls, kinds: list[str]) -> list[str]:
        return list(dict.fromkeys(["jsonl", *kinds]))


class ProbeConfig(Section):
    steps: StrictInt = Field(
        default=100,
        ge=1,
        le=1_000_000,
        description="L-BFGS iterations of the linear probe (cached features).",
    )
    weight_decay: Real = Field(
        default=1e-4, ge=0, description="L2 penalty on the linear probe's weights."
    )
    batch_size: StrictInt = Field(
        default=512, ge=1, le=MAX_BATCH, description="Batch size of the probe's feature extraction."
    )
    knn_k: StrictInt = Field(
        default=200, ge=1, le=MAX_COUNT, description="Neighbours of the weighted kNN."
    )
    knn_temperature: Real = Field(
        default=0.1, gt=0, description="The kNN weighs neighbours by exp(similarity / this)."
    )


# ------------------------------------------------------------------ methods: shared options


class MethodConfig(Section):
    """Fields every objective shares; ``check`` sees the whole recipe (cross-section rules)."""

    name: str = Field(
        "hssl",
        description="The SSL method; it decides which method.* keys apply "
        "(in method.base_method: method.base, may be left out).",
    )

    def check(self, recipe: Recipe) -> None:
        """Raise ``ValueError`` when the recipe's other sections do not suit this method."""


class ProjectorFields(MethodConfig):
    """A projection head ``features -> hidden -> out`` (SimCLR's 512-2048-128 on CIFAR)."""

    projector_hidden_dim: StrictInt = Field(
        default=512, ge=1, le=MAX_WIDTH, description="Hidden width of the projection head."
    )
    projector_out_dim: StrictInt = Field(
        default=128, ge=1, le=MAX_WIDTH, description="Output width of the projection head."
    )


class TemperatureFields(MethodConfig):
    """NT-Xent's temperature."""

    temperature: Real = Field(default=0.5, gt=0, description="NT-Xent's temperature.")


class FiberBundleFields(MethodConfig):
    """A view reads a bundle ``G0`` of the ``fiber_bundle_size`` fibers nearest the identity."""

    fiber_bundle_size: StrictInt = Field(
        default=1,
        ge=1,
        le=MAX_IMAGE_SIDE,
        description="Fibers a view pools: |G0|, the elements nearest the identity "
        "(hssl translation: the window side).",
    )
    bundle_pool: Literal["mean", "max"] = Field(
        "mean", description="How a view pools its fiber bundle."
    )

    def check(self, recipe: Recipe) -> None:
        super().check(recipe)
        check_sizes_fit_group(recipe, ("fiber_bundle_size",))


class ReadoutFields(FiberBundleFields):
    """Which backbone feature an A-SSL objective projects: the identity bundle or invariant."""

    readout: Literal["fiber", "invariant"] = Field(
        "fiber",
        description="What the head reads: the identity fiber bundle or the invariant features.",
    )


class TwoViewFields(MethodConfig):
    """Two views from base augmentations of the input (A-SSL)."""

    augment: AugmentConfig = Field(
        default_factory=AugmentConfig, description="Base augmentations making the two views."
    )


class OptionalAugmentFields(MethodConfig):
    """Base augmentations of the input before the method's own transformation, if any."""

    augment: AugmentConfig | None = Field(
        None, description="Base augmentations of the input first; null: none."
    )


class BootstrapFields(MethodConfig):
    """BYOL's predictor ``out -> hidden -> out`` and moving-average target."""

    predictor_hidden_dim: StrictInt = Field(
        default=512, ge=1, le=MAX_WIDTH, description="Hidden width of BYOL's predictor."
    )
    base_momentum: Real = Field(
        default=0.99,
        ge=0,
        le=1,
        description="The target's moving-average momentum at step 0 (cosine schedule to 1).",
    )


def check_sizes_fit_group(recipe: Recipe, keys: tuple[str, ...]) -> None:
    """Neighbourhood sizes (``G0``, spread) cannot exceed ``|G|``."""
    order = get_group(recipe.model.group).order
    for key in keys:
        value = getattr(recipe.method, key, None)
        if value is not None and value > order:
            raise ValueError(
                f"method.{key}={value} exceeds |G|={order} of group {recipe.model.group}"
            )


def refuse_group_element(augment: AugmentConfig | None, key: str, why: str) -> None:
    if augment is not None and augment.group_element:
        raise ValueError(f"{why}; set method.{key}.group_element=false")


# ------------------------------------------------------------------ methods


class HsslConfig(ProjectorFields, TemperatureFields, FiberBundleFields, OptionalAugmentFields):
    """H-SSL (Keller et al. 2023): views read from group fibers or spatial windows."""

    name: Literal["hssl"] = "hssl"
    fibers: Literal["group", "translation"] = Field(
        "group", description="Read views from group fibers or from spatial windows."
    )
    pair_sampling: Literal["distinct", "iid"] = Field(
        "distinct", description="An image's two views at distinct positions, or independent."
    )
    spread: StrictInt | None = Field(
        default=None,
        ge=1,
        le=MAX_IMAGE_SIDE,
        description="Two views lie within the spread elements nearest the identity "
        "(translation: offsets up to spread); null: anywhere.",
    )
    base_loss: Literal["infonce", "vicreg"] = Field(
        "infonce", description="The loss on the views: NT-Xent (infonce) or VICReg."
    )
    all_fibers_positive: StrictBool = Field(
        False, description="Every position of both views is a positive, not one sampled pair."
    )

    def check(self, recipe: Recipe) -> None:
        if self.base_loss == "vicreg" and self.all_fibers_positive:
            raise ValueError(
                "method.base_loss=vicreg compares exactly two views; set "
                "method.all_fibers_positive=false (or use method.base_loss=infonce)"
            )
        if self.fibers == "translation":
            return  # window sizes are checked against the feature map at the first step
        group = get_group(recipe.model.group)
        check_sizes_fit_group(recipe, ("fiber_bundle_size", "spread"))
        refuse_group_element(
            self.augment,
            "augment",
            "hssl reads the group part of a view from fibers (use method.name=simclr "
            "for input group elements)",
        )
        if group.order == 1 and self.augment is None:
            raise ValueError(
                "hssl on the trivial group has one fiber, so views would be identical; "
                "pick a group (model.group=rot4), method.fibers=translation, or method.augment"
            )
        if not group.cyclic:  # a bundle fits at S - |G0| + 1 places of a scale axis
            places = group.order - self.fiber_bundle_size + 1
            if self.pair_sampling == "distinct" and places < 2:
                raise ValueError(
                    f"method.fiber_bundle_size={self.fiber_bundle_size} fits at one place on the "
                    f"{group.order} scales of {group.name}, so two distinct views cannot be read; "
                    f"use fiber_bundle_size <= {group.order - 1}"
                )
        distinct_room = (self.spread or group.order) >= 2
        if group.order > 1 and self.pair_sampling == "distinct" and not distinct_room:
            raise ValueError("method.spread=1 leaves no distinct element; use spread >= 2")


class SimclrConfig(ProjectorFields, TemperatureFields, ReadoutFields, TwoViewFields):
    """SimCLR (Chen et al. 2020): two augmented views, NT-Xent."""

    name: Literal["simclr"] = "simclr"


class VicregConfig(ProjectorFields, ReadoutFields, TwoViewFields):
    """VICReg (Bardes et al. 2022); the expander is ``projector_hidden_dim`` wide.

    CPU-sized defaults (512-512-512); the CIFAR recipes set solo-learn's 2048-2048-2048.
    """

    name: Literal["vicreg"] = "vicreg"
    projector_out_dim: StrictInt = Field(
        default=512, ge=1, le=MAX_WIDTH, description="Output width of the projection head."
    )
    expander_layers: StrictInt = Field(
        default=3, ge=2, le=16, description="Linear layers of the expander."
    )
    invariance_weight: Real = Field(
        default=25.0, ge=0, description="Weight of the invariance (mean squared error) term."
    )
    variance_weight: Real = Field(
        default=25.0, ge=0, description="Weight of the variance (standard deviation hinge) term."
    )
    covariance_weight: Real = Field(default=1.0, ge=0, description="Weight of the covariance term.")


class ByolConfig(ProjectorFields, ReadoutFields, TwoViewFields, BootstrapFields):
    """BYOL (Grill et al. 2020): projector ``hidden -> out``, predictor ``out -> hidden -> out``.

    CPU-sized defaults (512-128 projector, 512 predictor); solo-learn's CIFAR setting
    (4096-256, predictor 4096, ``base_momentum`` 0.99) is in recipes/cifar_byol.yaml.
    """

    name: Literal["byol"] = "byol"


def _equimod_augment() -> ExtendedAugmentConfig:
    """SimCLR's CIFAR pipeline with torchvision's random jitter order, as EquiMod uses it."""
    return ExtendedAugmentConfig(jitter_order="random")


class EquimodConfig(ProjectorFields, TemperatureFields, ReadoutFields, BootstrapFields):
    """EquiMod (Devillers & Lefort 2023) on SimCLR or BYOL.

    ``temperature`` is SimCLR's (unused with ``base: byol``); ``second_augment`` gives the
    second view its own pipeline (BYOL's asymmetric blur and solarization); unset, both
    views share ``augment``. The bootstrap options are BYOL's.
    """

    name: Literal["equimod"] = "equimod"
    base: Literal["simclr", "byol"] = Field(
        "simclr", description="The invariant branch: SimCLR or BYOL."
    )
    augment: ExtendedAugmentConfig = Field(
        default_factory=_equimod_augment, description="Augmentations of the views."
    )
    second_augment: ExtendedAugmentConfig | None = Field(
        None, description="The second view's own augmentations; null: as augment."
    )
    equivariant_weight: Real = Field(
        default=1.0, ge=0, description="Weight of the equivariant loss; 0 skips its branch."
    )
    equivariant_temperature: Real = Field(
        default=0.2, gt=0, description="NT-Xent temperature of the equivariant loss."
    )
    equivariant_hidden_dim: StrictInt = Field(
        default=512, ge=1, le=MAX_WIDTH, description="Hidden width of the equivariant projector."
    )
    equivariant_dim: StrictInt = Field(
        default=128, ge=1, le=MAX_WIDTH, description="Width of the equivariant embedding."
    )

    def check(self, recipe: Recipe) -> None:
        super().check(recipe)
        for key in ("augment", "second_augment"):
            refuse_group_element(
                getattr(self, key),
                key,
                f"method.{key}.group_element: EquiMod's parameter vector does not encode "
                "group elements",
            )

    def base_config(self) -> SimclrConfig | ByolConfig:
        """The base method's own config, sharing this one's values (one composition pattern)."""
        fields = METHOD_CONFIGS[self.base].model_fields
        shared = {key: getattr(self, key) for key in fields if key not in ("name", "augment")}
        return METHOD_CONFIGS[self.base](**shared)  # type: ignore[return-value]


class InvcontrastConfig(ProjectorFields, TemperatureFields, TwoViewFields):
    """Invariant contrastive loss (Mukuta & Harada): orbit-pooled similarity in NT-Xent."""

    name: Literal["invcontrast"] = "invcontrast"
    pooling: Literal["max", "logsumexp"] = Field(
        "max", description="How similarity pools over the group orbit (logsumexp: a smooth max)."
    )
    pooling_temperature: Real = Field(
        default=0.1, gt=0, description="Temperature of the logsumexp pooling."
    )

    def check(self, recipe: Recipe) -> None:
        super().check(recipe)
        if not get_group(recipe.model.group).cyclic:
            raise ValueError(
                f"invcontrast pools similarity over the orbit of every fiber permutation, and "
                f"the scale axis of {recipe.model.group} is not cyclic (its shifts lose fibers); "
                "use a rotation group or method.name=simclr"
            )


class EqlabelsConfig(OptionalAugmentFields):
    """Equivariant pretext labels (Mukuta & Harada): predict the group element applied."""

    name: Literal["eqlabels"] = "eqlabels"
    head: Literal["equivariant", "invariant"] = Field(
        "equivariant",
        description="One shared map per fiber (equivariant) or a linear map of the "
        "invariant features (the control).",
    )
    head_hidden_dim: StrictInt | None = Field(
        default=None,
        ge=1,
        le=MAX_WIDTH,
        description="equivariant head: hidden width; null: linear.",
    )

    def check(self, recipe: Recipe) -> None:
        group = get_group(recipe.model.group)
        if group.is_trivial:
            raise ValueError(
                "eqlabels predicts the group element applied to the input, and "
                f"model.group={group.name} has only one; use e.g. model.group=rot4"
            )
        refuse_group_element(
            self.augment, "augment", "eqlabels applies its own random group element (the label)"
        )
        if self.augment is not None and self.augment.hflip > 0 and group.flips:
            raise ValueError(
                f"method.augment.hflip > 0 is a reflection, an element of {group.name}, and "
                "would change the label; set method.augment.hflip=0"
            )


def blind_to_task(task: str, group: AnyGroup) -> bool:
    """Whether group-pooled features are exactly invariant to every transformation of ``task``."""
    if task == "rotation4":
        return group.rotations % 4 == 0
    if task == "hflip":
        return group.flips
    if task == "vflip":  # a vertical flip is a horizontal flip followed by a half turn
        return group.flips and group.rotations % 2 == 0
    return False


class EsslConfig(OptionalAugmentFields):
    """E-SSL: transformation prediction alone or added to any base method (``base_method``)."""

    name: Literal["essl"] = "essl"
    task: Annotated[str, registered("pretext task", PRETEXT_TASKS)] = Field(
        "rotation4", description=f"The pretext task: {', '.join(PRETEXT_TASKS)}."
    )
    weight: Real = Field(default=1.0, ge=0, description="Weight of the pretext cross-entropy.")
    label_sampling: Literal["all", "random"] = Field(
        "all", description="Every transformation of every image, or one random one each."
    )
    crop_size: StrictInt | None = Field(
        default=None,
        ge=2,
        le=MAX_IMAGE_SIDE,
        description="Resize the pretext view to this side; null: keep it.",
    )
    head_grid: StrictInt = Field(
        default=2, ge=1, le=64, description="The head reads the pooled map on a grid this wide."
    )
    head_hidden_dim: StrictInt = Field(
        default=2048, ge=1, le=MAX_WIDTH, description="Hidden width of the pretext head."
    )
    base: str = Field(
        "none", description="The method the pretext loss is added to, or none (alone)."
    )
    base_method: MethodSection | None = Field(
        None, description="The base method's options: its method.* keys."
    )
    explaining_away: Literal["none", "add", "eliminate"] = Field(
        "none", description="Add or subtract (gradient reversal) a class cross-entropy."
    )
    class_weight: Real = Field(
        default=1.0, ge=0, description="Weight of the explaining-away class term."
    )
    class_count: StrictInt = Field(
        default=10, ge=2, le=MAX_WIDTH, description="Classes of the explaining-away head."
    )

    @model_validator(mode="before")
    @classmethod
    def _base_method_named(cls, raw: Any) -> Any:
        """``base_method`` is validated as the ``base`` objective's config: name it so."""
        if not isinstance(raw, dict):
            return raw
        base = raw.get("base", "none")
        nested = raw.get("base_method")
        if base == "none":
            if nested:
                raise ValueError(
                    "method.base_method is set but method.base is none; "
                    "set method.base (e.g. simclr) or remove method.base_method"
                )
            return {key: value for key, value in raw.items() if key != "base_method"}
        known = sorted(name for name in METHOD_CONFIGS if name != "essl")
        if base not in known:
            raise ValueError(
                f"unknown method.base {base!r}; use none or one of: {', '.join(known)}"
            )
        if isinstance(nested, MethodConfig):
            nested = nested.model_dump()
        if nested is not None and not isinstance(nested, dict):
            raise ValueError("method.base_method is a section of the base method's options")
        nested = dict(nested or {})
        if nested.setdefault("name", base) != base:
            raise ValueError(
                f"method.base_method.name={nested['name']!r} differs from method.base={base!r}; "
                "drop method.base_method.name"
            )
        return {**raw, "base_method": nested}

    def check(self, recipe: Recipe) -> None:
        group = get_group(recipe.model.group)
        equivariant = recipe.model.structure == "equivariant" and not group.is_trivial
        if self.head_grid == 1 and equivariant and blind_to_task(self.task, group):
            raise ValueError(
                f"method.head_grid=1 reads features invariant to {group.name}, which cannot "
                f"predict {self.task}; use method.head_grid >= 2"
            )
        refuse_group_element(
            self.augment,
            "augment",
            "method.augment.group_element=true would transform the pretext view by a "
            "random group element and scramble its labels",
        )
        if self.augment is not None and self.augment.hflip > 0 and self.task == "hflip":
            raise ValueError(
                "method.augment.hflip > 0 flips the pretext view at random, which makes the "
                "hflip task unlearnable; set method.augment.hflip=0"
            )
        if self.task == "jigsaw4":
            side = self.crop_size or recipe.data.image_size
            if side is not None and side % 2:
                raise ValueError(
                    f"jigsaw4 cuts the pretext view into 2x2 tiles, so its side must be even "
                    f"(got {side}); set an even method.crop_size"
                )
        if self.base == "none" and self.weight == 0:
            raise ValueError(
                "method.weight=0 with method.base=none leaves nothing to learn; "
                "use method.task=none for the random-init baseline, or set method.base"
            )
        if self.base_method is not None:
            self.base_method.check(recipe.model_copy(update={"method": self.base_method}))


METHOD_CONFIGS: dict[str, type[MethodConfig]] = {
    "byol": ByolConfig,
    "eqlabels": EqlabelsConfig,
    "equimod": EquimodConfig,
    "essl": EsslConfig,
    "hssl": HsslConfig,
    "invcontrast": InvcontrastConfig,
    "simclr": SimclrConfig,
    "vicreg": VicregConfig,
}

MethodSection = Annotated[
    Union[tuple(METHOD_CONFIGS.values())],  # noqa: UP007 (a union built from the registry)
    Field(discriminator="name"),
]
EsslConfig.model_rebuild()


def _method_named(raw: Any) -> Any:
    """Default ``name`` to hssl and check it first, for a "did you mean" on a typo."""
    if isinstance(raw, MethodConfig):
        return raw
    if raw is not None and not isinstance(raw, dict):
        raise ValueError("method is a section of options (name: hssl, temperature: ...)")
    raw = dict(raw or {})
    raw["name"] = check_registered("method", raw.get("name", "hssl"), METHOD_CONFIGS)
    return raw


# ------------------------------------------------------------------ the recipe


class Recipe(Section):
    data: DataConfig = Field(default_factory=DataConfig, description="The images.")
    model: ModelConfig = Field(
        default_factory=ModelConfig, description="The backbone and its symmetry group."
    )
    method: MethodSection = Field(
        default_factory=HsslConfig, description="The SSL method (method.name) and its options."
    )
    optim: OptimConfig = Field(
        default_factory=OptimConfig, description="The optimiser and learning-rate schedule."
    )
    train: TrainConfig = Field(default_factory=TrainConfig, description="The training loop.")
    probe: ProbeConfig = Field(
        default_factory=ProbeConfig, description="Linear probe and kNN on frozen features."
    )
    seed: StrictInt = Field(
        0, ge=0, le=MAX_SEED, description="Seed of weights, shuffling and random draws."
    )

    @field_validator("method", mode="before")
    @classmethod
    def _method_name(cls, raw: Any) -> Any:
        return _method_named(raw)

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        check_model_takes_images(self)
        self.method.check(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def check_model_takes_images(recipe: Recipe) -> None:
    """Refuse image sides the backbone's down-sampling would shrink to nothing.

    Checked where the side is known without the files: ``data.image_size`` or the data
    set's native side, and E-SSL's pretext view (``method.crop_size``).
    """
    native = NATIVE_SHAPES.get(recipe.data.name)
    sides = {}
    if recipe.data.image_size is not None:
        sides["data.image_size"] = recipe.data.image_size
    elif native is not None:
        sides[f"data.name={recipe.data.name} (native size)"] = min(native[1:])
    crop_size = getattr(recipe.method, "crop_size", None)
    if crop_size is not None:
        sides["method.crop_size"] = crop_size
    model = recipe.model
    for key, side in sides.items():
        if feature_map_side(model, side) >= 1:
            continue
        smallest = next(
            (s for s in range(side, MAX_IMAGE_SIDE + 1) if feature_map_side(model, s)), None
        )
        staged = model.backbone in ("cnn", "sesn_cnn")
        stages = f" with {len(model.widths)} stages" if staged else ""
        raise ValueError(
            f"{key}={side} is too small for backbone {model.backbone}{stages}: its "
            f"down-sampling needs images of at least {smallest}x{smallest} pixels; use larger "
            "images" + (" or fewer model.widths" if stages else "")
        )
    hssl = recipe.method
    if isinstance(hssl, HsslConfig) and hssl.fibers == "translation" and sides:
        side = feature_map_side(model, min(sides.values()))
        if hssl.fiber_bundle_size > side:
            raise ValueError(
                f"method.fiber_bundle_size={hssl.fiber_bundle_size} exceeds the {side}x{side} "
                "feature map; use a smaller window for translation fibers"
            )


def keys_at(path: list[str], method_name: str = "hssl") -> list[str]:
    """The keys accepted at a dotted ``path`` of a recipe (``[]`` is the top level)."""
    model: type[BaseModel] | None = Recipe
    for part in path:
        if model is None:
            return []
        if model is Recipe and part == "method":
            model = METHOD_CONFIGS.get(method_name)
            continue
        field = model.model_fields.get(part)
        model = _model_in(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The section model an annotation holds (``X``, ``X | None``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def methods_with_option(option: str) -> list[str]:
    return sorted(name for name, c in METHOD_CONFIGS.items() if option in c.model_fields)
