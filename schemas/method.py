"""The fine-tuning method: a union discriminated by `type`, one model per method, each with its own defaults.

Families decide how a method is built, saved and loaded (see adapterflow/methods/):
- peft: LoRA and its variants, QLoRA, AdaLoRA, IA3, prefix, prompt and P-tuning (a PEFT adapter folder);
- full and freeze: the whole model's weights;
- bitfit and bottleneck: only the tensors they train, on top of the unchanged base.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from schemas.base import StrictModel

TargetModules = list[str] | Literal["all-linear"]


class MethodBase(StrictModel):
    """What every method says about itself."""

    family: ClassVar[str] = "peft"
    default_learning_rate: ClassVar[float] = 2e-4
    prompt_learning: ClassVar[bool] = False  # virtual tokens in front of the input: no packing, own loss path
    mergeable: ClassVar[bool] = False  # `adapterflow export --merge` can write it as a standalone model


class FullMethod(MethodBase):
    """Full fine-tuning: every weight trains and the whole model is saved."""

    family: ClassVar[str] = "full"
    mergeable: ClassVar[bool] = True  # standalone already
    default_learning_rate: ClassVar[float] = 2e-5
    type: Literal["full"]


class FreezeMethod(MethodBase):
    """Freeze tuning: only the last N transformer layers and/or named modules train; full weights are saved."""

    family: ClassVar[str] = "full"
    mergeable: ClassVar[bool] = True  # standalone already
    default_learning_rate: ClassVar[float] = 5e-5
    type: Literal["freeze"]
    trainable_layers: int = Field(2, ge=0, description="train the last N transformer layers")
    trainable_modules: list[str] = Field(
        default_factory=list, description="also train modules whose qualified name ends with one of these, e.g. lm_head"
    )

    @model_validator(mode="after")
    def _something_trains(self) -> FreezeMethod:
        if self.trainable_layers == 0 and not self.trainable_modules:
            raise ValueError("nothing would train: set trainable_layers > 0 or list trainable_modules")
        return self


class LoraFields(MethodBase):
    """Low-rank update matrices next to the frozen weights."""

    mergeable: ClassVar[bool] = True
    r: int = Field(16, ge=1, le=1024, description="rank of the update matrices")
    alpha: float = Field(32, gt=0, description="scaling numerator (the update is scaled by alpha / r)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA input (on CPU any dropout costs about 60% speed)")
    target_modules: TargetModules = Field(
        "all-linear", description="module names to adapt, or all-linear for every linear layer but the head"
    )
    rslora: bool = Field(False, description="rank-stabilised scaling alpha / sqrt(r) (rsLoRA)")
    dora: bool = Field(False, description="weight-decomposed LoRA: trains magnitude and direction (DoRA)")
    init: Literal["default", "gaussian", "pissa", "olora"] = Field(
        "default", description="initialisation: default (B = 0), gaussian, pissa (principal singular vectors), olora "
        "(QR); pissa and olora rewrite the base weights, so loading the adapter repeats that decomposition"
    )
    loraplus_lr_ratio: float | None = Field(
        None, ge=1, description="LoRA+: the B matrices learn this many times faster than A (e.g. 16)"
    )


class LoraMethod(LoraFields):
    """LoRA, with its variants as switches: rsLoRA, DoRA, LoRA+, PiSSA and OLoRA initialisation."""

    type: Literal["lora"]


class QLoraMethod(LoraFields):
    """LoRA on a base quantised with bitsandbytes (4-bit NF4 with double quantisation, or 8-bit)."""

    type: Literal["qlora"]
    bits: Literal[4, 8] = Field(4, description="bits per base weight")
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type")
    double_quant: bool = Field(True, description="quantise the quantisation constants too (4-bit)")

    @model_validator(mode="after")
    def _lora_init_on_quantised(self) -> QLoraMethod:
        if self.init in ("pissa", "olora"):
            raise ValueError(f"init {self.init} rewrites the base weights, which are quantised here: use method lora")
        return self


class AdaLoraMethod(MethodBase):
    """AdaLoRA: starts at init_r and prunes the rank budget down to target_r during training."""

    # Its singular values start at zero between small matrices: an update needs a high rate to show. In
    # benchmarks/methods.py 1e-3 ended level with the base model, 1e-2 and 2e-2 well below it (2e-2 still
    # learning steadily over 4 times the steps)
    default_learning_rate: ClassVar[float] = 2e-2
    mergeable: ClassVar[bool] = True
    type: Literal["adalora"]
    init_r: int = Field(12, ge=1, description="rank every update starts with")
    target_r: int = Field(4, ge=1, description="average rank left after pruning")
    alpha: float = Field(32, gt=0, description="scaling numerator")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the update's input")
    target_modules: TargetModules = Field("all-linear", description="module names to adapt")
    warmup_share: float = Field(0.1, ge=0, lt=1, description="share of steps before pruning starts (tinit)")
    final_share: float = Field(0.2, ge=0, lt=1, description="share of steps at the end with the final budget (tfinal)")

    @model_validator(mode="after")
    def _budget(self) -> AdaLoraMethod:
        problems = []
        if self.target_r > self.init_r:
            problems.append(f"target_r ({self.target_r}) must not exceed init_r ({self.init_r})")
        if self.warmup_share + self.final_share >= 1:
            problems.append("warmup_share + final_share must leave steps for pruning (sum below 1)")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class IA3Method(MethodBase):
    """IA3: learned vectors that rescale keys, values and feed-forward activations."""

    default_learning_rate: ClassVar[float] = 3e-3
    mergeable: ClassVar[bool] = True
    type: Literal["ia3"]
    target_modules: list[str] | None = Field(None, description="modules to rescale (None: PEFT's choice for the model)")
    feedforward_modules: list[str] | None = Field(
        None, description="those of target_modules that are feed-forward (rescaled on their input)"
    )

    @model_validator(mode="after")
    def _feedforward_subset(self) -> IA3Method:
        if self.feedforward_modules is not None and self.target_modules is None:
            raise ValueError("set target_modules too when listing feedforward_modules")
        if self.feedforward_modules and not set(self.feedforward_modules) <= set(self.target_modules or []):
            raise ValueError("feedforward_modules must be a subset of target_modules")
        return self


# A neutral instruction: its real token states start prefix and prompt tuning near the base model's loss, where
# random virtual tokens start above it (random prefixes: far above, 11.7 against 3.2). Better: describe the task.
DEFAULT_INIT_TEXT = "You are a helpful assistant. Answer the user's question accurately and concisely."


class PromptLearningFields(MethodBase):
    """Virtual tokens learned in front of every input."""

    prompt_learning: ClassVar[bool] = True
    num_virtual_tokens: int = Field(20, ge=1, le=512, description="learned virtual tokens")


class PrefixMethod(PromptLearningFields):
    """Prefix tuning: learned key/value prefixes in every attention layer."""

    type: Literal["prefix"]
    init: Literal["auto", "text", "random"] = Field(
        "auto", description="text: start from the base model's keys and values of init_text (causal LMs without "
        "projection); random: from random values; auto: text where it applies, random otherwise"
    )
    init_text: str = Field(
        DEFAULT_INIT_TEXT, min_length=1, description="text whose keys and values start the prefix, read as a system "
        "turn and repeated or cut to num_virtual_tokens tokens; describe the task"
    )
    projection: bool = Field(
        False, description="reparametrise the prefix through an MLP while training (starts from random values)"
    )
    encoder_hidden_size: int | None = Field(
        None, ge=1, description="hidden size of that MLP (None: the model's hidden size)"
    )

    @property
    def default_learning_rate(self) -> float:  # type: ignore[override]
        # benchmarks/methods.py: the prefix itself learns best near 3e-2 (1e-2 and 1e-1 end higher); through the
        # MLP, 1e-2 drives the prefix far off (eval loss 9.0 against the base model's 3.1) and 1e-3 learns
        return 1e-3 if self.projection else 3e-2

    @model_validator(mode="after")
    def _text_needs_the_prefix_itself(self) -> PrefixMethod:
        if self.init == "text" and self.projection:
            raise ValueError("init: text loads keys and values into the prefix itself, which projection replaces by "
                             "an MLP: set init: random (or auto), or projection: false")
        return self


class PromptMethod(PromptLearningFields):
    """Prompt tuning: learned input embeddings, from the embedding of a text or from random values."""

    default_learning_rate: ClassVar[float] = 3e-2
    type: Literal["prompt"]
    init: Literal["random", "text"] = Field("text", description="start from init_text's embeddings or from random ones")
    init_text: str | None = Field(
        DEFAULT_INIT_TEXT, description="text whose token embeddings start the prompt (init: text); describe the task"
    )

    @model_validator(mode="after")
    def _text_for_text_init(self) -> PromptMethod:
        if self.init == "text" and not (self.init_text or "").strip():
            raise ValueError("init: text needs init_text, e.g. 'Answer questions about the Python API:'")
        return self


class PTuningMethod(PromptLearningFields):
    """P-tuning: virtual token embeddings produced by a small prompt encoder."""

    # benchmarks/methods.py: an MLP as wide as the model at 3e-3 learns most (width 128: about half as much; 1e-2:
    # less); an LSTM learns more still, with 15 times the parameters
    default_learning_rate: ClassVar[float] = 3e-3
    type: Literal["ptuning"]
    encoder: Literal["mlp", "lstm"] = Field("mlp", description="prompt encoder")
    encoder_hidden_size: int | None = Field(
        None, ge=1, description="hidden size of the prompt encoder (None: the model's hidden size)"
    )


class BottleneckMethod(MethodBase):
    """Bottleneck adapters: small down/up projections after attention and feed-forward blocks."""

    family: ClassVar[str] = "bottleneck"
    default_learning_rate: ClassVar[float] = 1e-3
    type: Literal["bottleneck"]
    style: Literal["houlsby", "pfeiffer"] = Field(
        "houlsby", description="houlsby: after attention and feed-forward; pfeiffer: after feed-forward only"
    )
    reduction_factor: int = Field(16, ge=1, description="hidden size / bottleneck size")
    non_linearity: Literal["relu", "gelu", "silu"] = Field("relu", description="activation inside the bottleneck")


class BitFitMethod(MethodBase):
    """BitFit: only the bias terms train (models without biases, like llama, can't use it)."""

    family: ClassVar[str] = "bitfit"
    mergeable: ClassVar[bool] = True  # the trained biases load into a standalone model
    default_learning_rate: ClassVar[float] = 1e-3
    type: Literal["bitfit"]


MethodVariant = (
    FullMethod | FreezeMethod | LoraMethod | QLoraMethod | AdaLoraMethod | IA3Method | PrefixMethod | PromptMethod
    | PTuningMethod | BottleneckMethod | BitFitMethod
)
Method = Annotated[MethodVariant, Field(discriminator="type")]
METHOD_TYPES = ("full", "freeze", "lora", "qlora", "adalora", "ia3", "prefix", "prompt", "ptuning", "bottleneck", "bitfit")
