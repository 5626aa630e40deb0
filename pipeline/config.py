"""params.yaml -> frozen dataclasses, validated before any work starts.

Each stage reads its own section. A bad value raises ParamsError naming the key
(`train.radius`), the value, and the fix, so a run never fails halfway for a typo.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .encoding.runtime_names import PRECISIONS, REMOVED_RUNTIMES, RUNTIMES
from .errors import UserError
from .method.noise_kinds import NOISE_KINDS  # choices that live beside the code that gives them meaning, torch-free
from .peers import PEERS  # prompt.method's names: the peers' own table, torch-free

# A number as YAML 1.2 (and so DVC) reads it; PyYAML (YAML 1.1) reads 1e-4 and 1e12 as text.
YAML12_NUMBER = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


class ParamsError(UserError, ValueError):
    """A params.yaml value is missing, unknown or out of range."""


DEFAULT_DATASET = "voc2007"


def _default_root() -> str:
    """prepare.root's default: where the download stage puts the default dataset (its spec's download folder)."""
    from .data.datasets.specs import DATASETS  # here, not at the top: the spec table's package loads polars (0.3 s)

    return DATASETS[DEFAULT_DATASET].download_root().as_posix()


@dataclass(frozen=True)
class PrepareParams:
    dataset: str = DEFAULT_DATASET
    root: str = field(default_factory=_default_root)
    splits: tuple[str, ...] = ("trainval", "test")
    labels_file: str | None = None
    label_names: str | None = None
    annotations: dict[str, str] | None = None  # coco: split -> COCO-format instances JSON
    keep_unannotated: bool = False  # coco, coco2014: keep images without any annotation
    image_root: str | None = None  # nuswide: the image folder; null = <root>/Flickr

    def check(self, key: str) -> None:
        from .data.datasets.specs import DATASETS  # one spec per dataset: its keys, splits, rules and download

        _one_of(f"{key}.dataset", self.dataset, tuple(DATASETS))
        spec = DATASETS[self.dataset]
        problem = spec.problem(self, key)  # what this dataset reads, needs and calls its splits (its root too)
        if problem:
            raise ParamsError(problem)
        if self.labels_file and not self.labels_file.lower().endswith((".csv", ".parquet", ".pq")):
            raise ParamsError(
                f"{key}.labels_file = {self.labels_file!r}: use a .csv or .parquet file "
                "with columns path, labels, split"
            )


@dataclass(frozen=True)
class OpenAIParams:
    """generate.backend = openai: OpenAI-compatible chat servers (POST {base_url}/chat/completions).

    Transport only: none of these change an answer, so none is in the generate journal's fingerprint."""

    base_urls: tuple[str, ...] = ("http://127.0.0.1:8000/v1",)  # several = scale-out, least-busy first
    model: str = "default"  # the `model` field of each request
    api_key_env: str = "OPENAI_API_KEY"  # environment variable holding the key; unset = no auth header
    concurrency: int = 4  # requests in flight, over all servers
    timeout_s: float = 60.0  # per request
    retries: int = 3  # extra tries for a timeout, an HTTP 5xx/429 or a garbled answer
    backoff_s: float = 1.0  # wait before retry i: backoff_s * 2**(i-1)

    def check(self, key: str) -> None:
        if not self.base_urls:
            raise ParamsError(f"{key}.base_urls is empty: list at least one server, e.g. http://127.0.0.1:8000/v1")
        for i, url in enumerate(self.base_urls):
            if not url.startswith(("http://", "https://")):
                raise ParamsError(
                    f"{key}.base_urls[{i}] = {url!r} is not an http(s) URL: write it like http://127.0.0.1:8000/v1"
                )
        if not self.model:
            raise ParamsError(f"{key}.model is empty: set the model name the server expects (any name for llama-cpp)")
        _at_least(f"{key}.concurrency", self.concurrency, 1)
        _positive(f"{key}.timeout_s", self.timeout_s)
        _at_least(f"{key}.retries", self.retries, 0)
        _at_least(f"{key}.backoff_s", self.backoff_s, 0)


# Allowed values, checked here only (`Params.check`, before any work): the code that uses a value
# trusts it, and tests/test_choices.py checks that each value has its own behaviour there.
# Image preprocessing of pipeline.encoding.openai_clip.image_transform (encode.resize).
RESIZE_MODES = ("square", "center_crop")
# Where images are encoded (encode.engine; pipeline.encoding.encode_images): this process, or a Ray cluster (ours).
ENGINES = ("local", "ray")
# encode.device, train.device (pipeline.device).
DEVICES = ("auto", "cpu", "cuda")
# Chat backends of pipeline.generate.backends (generate.backend).
BACKENDS = ("llama_cpp", "openai")
# Labelled images per class in the few-shot setting (fewshot.shots; 0 = off), the paper's.
SHOT_COUNTS = (0, 1, 2, 4, 8, 16)
# encode.model names starting so are open_clip models (pipeline.encoding.open_clip_backbones).
OPEN_CLIP_PREFIX = "open_clip:"
# How a text's training labels are set (generate.label_rule): exactly its combination (the paper's),
# or the combination plus every label named in the text (ours).
LABEL_RULES = ("combination", "mentions")
# Which of its combination's labels an LLM caption must name (generate.require_labels, ours): none (no
# check, the paper's), any (at least one), all. A caption that falls short is sampled again, then dropped.
REQUIRE_LABELS = ("none", "any", "all")
# generate.model as a GGUF file on the Hugging Face Hub: hf:<owner>/<repo>[@<revision>]/<path in the repo>.gguf
HUB_REFERENCE = re.compile(r"hf:(?P<repo>[\w.-]+/[\w.-]+)(?:@(?P<revision>[^/\s]+))?/(?P<filename>[^\s]+\.gguf)")
HUB_REFERENCE_EXAMPLE = "hf:bartowski/Qwen2.5-0.5B-Instruct-GGUF/Qwen2.5-0.5B-Instruct-Q4_K_M.gguf"
# How partial-label texts are shifted towards the images (partial.shift; pipeline.method.centroids).
SHIFT_MODES = ("combination", "label", "global", "none")
# How evaluate.integrate_with averages another method's scores with the adapter's (pipeline.evaluation.metrics).
# global: each method's whole score matrix scaled (TaI-DPT's ensemble_score.py, the paper's policy);
# per_class, both: per-class scaling of the other method's scores, or of both (ours).
INTEGRATE_SCALINGS = ("global", "per_class", "both")
# evaluate.integrate_with: this value means the prompt stage's test scores (artifacts/prompt/scores.parquet).
INTEGRATE_PROMPT = "prompt"
# The most captions (n_combinations x captions_per_combination) one generate run may plan: the plan,
# its rows and the texts table take about 2 KB per caption in memory (measured: 200,000 template
# captions of VOC peak near 580 MiB), so 2 million is ~4 GB, and days of LLM time.
MAX_CAPTIONS = 2_000_000
MAX_PARALLEL = 64  # generate.parallel: llama.cpp sequences decoded at once

# The paper's other captioning prompt (generate.alt_prompt).
PAPER_ALT_PROMPT = "please organize the words {labels} into a sentence to describe an image."


@dataclass(frozen=True)
class GenerateParams:
    """Stage `generate` (pipeline.generate): captions for random label combinations."""

    seed: int = 0
    n_combinations: int = 10000
    max_labels: int = 3
    llm_fraction: float = 1.0
    captions_per_combination: int = 1
    prompt: str = "Please briefly caption an image that contains {labels}."
    alt_prompt: str = PAPER_ALT_PROMPT
    alt_prompt_fraction: float = 0.0
    different_prompt: str = "Go ahead and add a caption to this image that is different from what you described before."
    shorten_prompt: str = "It's too long, please make it shorter."
    max_shorten_rounds: int = 3
    max_retries: int = 2
    templates: tuple[str, ...] = ("there are {labels} in the photo.",)
    use_synonyms: bool = True
    backend: str = "llama_cpp"
    model: str = "smollm2"
    n_threads: int = 2
    repack_weights: bool = False  # ours: llama.cpp's load-time weight repacking (crashed on AMX CPUs; docs/models.md)
    n_ctx: int = 1024
    temperature: float = 0.7
    max_tokens: int = 96
    single_sentence: bool = (
        True  # the LLM stops at the end of its first sentence (pipeline.generate.sentence); false: the paper's turns
    )
    journal_every_s: float = 2.0  # finished captions reach the resume journal at least this often
    label_rule: str = "combination"  # combination (the paper's) | mentions (plus labels named in the text)
    require_labels: str = (
        "any"  # ours: none (the paper's) | any | all of its combination's labels an LLM caption must name
    )
    parallel: int = 8  # ours: llama_cpp chats decoded at once (llama.cpp batch API); 1: one at a time
    openai: OpenAIParams = field(default_factory=OpenAIParams)

    def check(self, key: str) -> None:
        _at_least(f"{key}.n_combinations", self.n_combinations, 1)
        _at_least(f"{key}.max_labels", self.max_labels, 1)
        _fraction(f"{key}.llm_fraction", self.llm_fraction)
        _at_least(f"{key}.captions_per_combination", self.captions_per_combination, 1)
        if self.n_combinations * self.captions_per_combination > MAX_CAPTIONS:
            raise ParamsError(
                f"{key}.n_combinations = {self.n_combinations} x {key}.captions_per_combination = "
                f"{self.captions_per_combination} asks for {self.n_combinations * self.captions_per_combination:,} "
                f"captions, more than one run can hold in memory (about 2 KB each; the cap is {MAX_CAPTIONS:,}): "
                f"lower n_combinations (the paper's VOC setting uses 10000)"
            )
        _at_least(f"{key}.max_shorten_rounds", self.max_shorten_rounds, 0)
        _at_least(f"{key}.max_retries", self.max_retries, 0)
        _one_of(f"{key}.backend", self.backend, BACKENDS)
        _at_least(f"{key}.n_threads", self.n_threads, 1)
        _at_least(f"{key}.n_ctx", self.n_ctx, 128)
        _at_least(f"{key}.max_tokens", self.max_tokens, 1)
        if self.max_tokens >= self.n_ctx:
            raise ParamsError(
                f"{key}.max_tokens = {self.max_tokens} leaves no room for the chat in {key}.n_ctx = {self.n_ctx}: "
                f"lower max_tokens (96 is plenty for a caption) or raise n_ctx"
            )
        _at_least(f"{key}.temperature", self.temperature, 0)
        _positive(f"{key}.journal_every_s", self.journal_every_s)
        _one_of(f"{key}.label_rule", self.label_rule, LABEL_RULES)
        _one_of(f"{key}.require_labels", self.require_labels, REQUIRE_LABELS)
        self._check_parallel(key)
        if not self.model:
            raise ParamsError(
                f"{key}.model is empty: use 'smollm2' (embedded), a hub reference such as {HUB_REFERENCE_EXAMPLE}, "
                "or the path of a GGUF file"
            )
        if self.model.startswith("hf:") and not HUB_REFERENCE.fullmatch(self.model):
            raise ParamsError(
                f"{key}.model = {self.model!r} is not a hub reference: write hf:<owner>/<repo>/<file>.gguf "
                f"(optionally hf:<owner>/<repo>@<revision>/<file>.gguf), e.g. {HUB_REFERENCE_EXAMPLE}"
            )
        if "{labels}" not in self.prompt:
            raise ParamsError(f"{key}.prompt has no '{{labels}}' placeholder: add it where the label list goes")
        _fraction(f"{key}.alt_prompt_fraction", self.alt_prompt_fraction)
        if self.alt_prompt_fraction > 0 and "{labels}" not in self.alt_prompt:
            raise ParamsError(f"{key}.alt_prompt has no '{{labels}}' placeholder: add it where the label list goes")
        if self.captions_per_combination > 1 and not self.different_prompt.strip():
            raise ParamsError(
                f"{key}.different_prompt is empty but {key}.captions_per_combination > 1: write the follow-up "
                "question, e.g. 'Go ahead and add a caption to this image that is different from what you "
                "described before.'"
            )
        if self.max_shorten_rounds > 0 and not self.shorten_prompt.strip():
            raise ParamsError(
                f"{key}.shorten_prompt is empty but {key}.max_shorten_rounds > 0: write it, e.g. "
                '"It\'s too long, please make it shorter.", or set max_shorten_rounds to 0'
            )
        if self.llm_fraction < 1 and not self.templates:
            raise ParamsError(f"{key}.templates is empty but {key}.llm_fraction < 1: add a template or set it to 1")
        for i, template in enumerate(self.templates):
            if "{labels}" not in template:
                raise ParamsError(f"{key}.templates[{i}] ({template!r}) has no '{{labels}}' placeholder: add it")
        self.openai.check(f"{key}.openai")

    def _check_parallel(self, key: str) -> None:
        if (
            not isinstance(self.parallel, int)
            or isinstance(self.parallel, bool)
            or not 1 <= self.parallel <= MAX_PARALLEL
        ):
            raise ParamsError(
                f"{key}.parallel = {self.parallel!r} is out of range: use 1 (one chat at a time) to {MAX_PARALLEL} "
                f"sequences decoded at once (the default 8: docs/generation.md)"
            )


@dataclass(frozen=True)
class EncodeParams:
    model: str = "RN50"
    image_resolution: int = 224
    partial_resolution: int | None = 448
    batch_size: int = 64
    shard_rows: int = 100000
    num_workers: int = 2
    device: str = "auto"
    resize: str = (
        "square"  # square: N x N (ours, as TaI-DPT's code) | center_crop: short side to N, centre crop (CLIP's)
    )
    precision: str = "fp32"  # ours: fp32 | bf16 (CPUs with bf16 instructions, GPUs) | fp16 (CUDA); in the cache key
    runtime: str = "auto"  # ours: auto | torch | torchscript | onnxruntime | compile (fp32 images, same outputs)

    engine: str = "local"  # ours: local | ray (image encoding on a Ray cluster, pipeline/encoding/encode_ray.py)
    ray_address: str | None = None  # a running Ray cluster to join; null: RAY_ADDRESS, else a local Ray

    def check(self, key: str) -> None:
        _one_of(f"{key}.resize", self.resize, RESIZE_MODES)
        _one_of(f"{key}.engine", self.engine, ENGINES)
        _one_of(f"{key}.precision", self.precision, PRECISIONS)
        if self.runtime in REMOVED_RUNTIMES:
            raise ParamsError(f"{key}.runtime = {self.runtime!r}: {REMOVED_RUNTIMES[self.runtime]}")
        _one_of(f"{key}.runtime", self.runtime, RUNTIMES)
        if self.engine == "ray" and importlib.util.find_spec("ray") is None:
            raise ParamsError(
                f"{key}.engine = 'ray' but Ray is not installed: pip install 'ray[data]', or use engine local"
            )
        if self.ray_address is not None and not (isinstance(self.ray_address, str) and self.ray_address.strip()):
            raise ParamsError(
                f"{key}.ray_address = {self.ray_address!r}: use a cluster address such as 'ray://head:10001', or null"
            )
        open_clip = self.model.startswith(OPEN_CLIP_PREFIX)
        if open_clip and importlib.util.find_spec("open_clip") is None:
            raise ParamsError(
                f"{key}.model = {self.model!r} but open_clip is not installed: "
                "pip install -e '.[open_clip]', or use an OpenAI CLIP name such as RN50"
            )
        for name in ("image_resolution", "partial_resolution"):
            value = getattr(self, name)
            if value is None:
                continue
            if open_clip:  # a ViT's patch (14, 16, 32) is checked when the model is loaded
                _at_least(f"{key}.{name}", value, 32)
            else:
                _multiple_of_32(f"{key}.{name}", value)
        _at_least(f"{key}.batch_size", self.batch_size, 1)
        _at_least(f"{key}.shard_rows", self.shard_rows, 1)
        _at_least(f"{key}.num_workers", self.num_workers, 0)
        _one_of(f"{key}.device", self.device, DEVICES)


@dataclass(frozen=True)
class ZeroshotParams:
    prompt: str = "a photo of a {label}."
    split: str = "test"

    def check(self, key: str) -> None:
        if "{label}" not in self.prompt:
            raise ParamsError(f"{key}.prompt has no '{{label}}' placeholder: add it, e.g. 'a photo of a {{label}}.'")


@dataclass(frozen=True)
class FewshotParams:
    """Few-shot setting (stage `fewshot`, read by `train`): `shots` labelled images per class of
    `split`, CoOp-style seeded sampling (`pipeline.data.fewshot`), mixed with the texts in training."""

    shots: int = 0  # 0 = off (zero-shot)
    split: str = "trainval"  # manifest split the support images come from
    seed: int = 0  # sampling seed
    radius: float = 1.0  # noise radius for the support images (texts use train.radius)
    noise: str = "interior"  # noise kind for the support images (eq. 6: inside the hypersphere)
    image_weight: float = 0.5  # share of each training batch drawn from the support images; 0 = texts only

    def check(self, key: str) -> None:
        _one_of(f"{key}.shots", self.shots, SHOT_COUNTS)
        _at_least(f"{key}.radius", self.radius, 0)
        _one_of(f"{key}.noise", self.noise, NOISE_KINDS)
        _fraction(f"{key}.image_weight", self.image_weight)

    @property
    def enabled(self) -> bool:
        return self.shots > 0


@dataclass(frozen=True)
class PartialParams:
    """Partial-label setting (stages `mask`, `centroids`, read by `train`): a seeded share
    `known_proportion` of the (image, label) entries of `split` is known (`pipeline.data.partial_labels`);
    texts are shifted towards the images (`shift`, `pipeline.method.centroids`) and perturbed with
    `radius`. With `image_weight` > 0 (ours; the paper trains on texts only) the partially
    labelled images also join training, with a loss mask."""

    known_proportion: float | None = None  # 0..0.9 turns the setting on (0: nothing known, no shift); null = off
    split: str = "trainval"  # manifest split of the partially labelled images
    seed: int = 0  # mask seed
    radius: float = 10.0  # text noise radius after the shift
    shift: str = "combination"  # combination (eq. 9) | label | global | none
    image_radius: float = 1.0  # noise radius for the partially labelled images (image_weight > 0)
    image_noise: str = "interior"  # noise kind for those images
    image_weight: float = 0.0  # share of each batch drawn from those images; 0 = texts only (the paper)

    def check(self, key: str) -> None:
        if self.known_proportion is not None and not 0 <= self.known_proportion <= 0.9:
            raise ParamsError(
                f"{key}.known_proportion = {self.known_proportion!r} is out of range: use a value from 0 "
                "(the setting on with no label known, so eq. 9 shifts no text: Fig. 6c's 0% point) to 0.9, "
                "or null to turn partial labels off"
            )
        _at_least(f"{key}.radius", self.radius, 0)
        _at_least(f"{key}.image_radius", self.image_radius, 0)
        _one_of(f"{key}.shift", self.shift, SHIFT_MODES)
        _one_of(f"{key}.image_noise", self.image_noise, NOISE_KINDS)
        _fraction(f"{key}.image_weight", self.image_weight)

    @property
    def enabled(self) -> bool:
        return self.known_proportion is not None


@dataclass(frozen=True)
class TrainParams:
    seed: int = 0
    epochs: int = 60
    batch_size: int = 64
    max_lr: float = 1e-4
    weight_decay: float = 0.01
    hidden_dim: int = 1024
    dropout: float = 0.1
    radius: float = 25.0
    noise: str = "surface"
    normalize: bool = False
    device: str = "auto"
    threshold_holdout: float = 0.0  # ours: share of labelled images held out of training to choose thresholds on

    def check(self, key: str) -> None:
        if not 0 <= self.threshold_holdout < 1:
            raise ParamsError(
                f"{key}.threshold_holdout = {self.threshold_holdout!r} is out of range: use a share "
                "in [0, 1), e.g. 0.25 (0: no threshold chosen on images, every label at 0.5)"
            )
        _at_least(f"{key}.epochs", self.epochs, 1)
        _at_least(f"{key}.batch_size", self.batch_size, 1)
        _positive(f"{key}.max_lr", self.max_lr)
        _at_least(f"{key}.weight_decay", self.weight_decay, 0)
        _at_least(f"{key}.hidden_dim", self.hidden_dim, 1)
        if not 0 <= self.dropout < 1:
            raise ParamsError(f"{key}.dropout = {self.dropout!r} is out of range: use a value in [0, 1)")
        _at_least(f"{key}.radius", self.radius, 0)
        _one_of(f"{key}.noise", self.noise, NOISE_KINDS)
        _one_of(f"{key}.device", self.device, DEVICES)


# prompt.coop_loss: CoOp is single-label (softmax cross-entropy) upstream; for multi-label images the
# project offers TaI-DPT's ranking loss (default) or BCE on the logits, TaI-DPT's only few-shot objective.
COOP_LOSSES = ("ranking", "bce")
# prompt.select: the epoch whose prompts score the test split. last: the final one (no selection);
# val: the best mAP on a seeded held-out slice of the method's own training set (pipeline/prompt/fit.py).
PROMPT_SELECTIONS = ("last", "val")
# The peers' own values a null param takes live in pipeline/peers.py, a dep of the stages that read the Plan:
# config.py only reads and checks, so an edit here never changes a result (tests/test_stale_cache.py).


@dataclass(frozen=True)
class PromptParams:
    """Stage `prompt` (pipeline/prompt/): a peer method on the same data, CLIP and evaluation, whose test
    scores `evaluate.integrate_with: prompt` averages with the adapter's (the paper's starred rows).
    none: the stage writes empty scores and a metrics file without a mAP. Null hyperparameters take
    the method's own default (pipeline/peers.py)."""

    method: str = "none"  # none | coop (few-shot) | dualcoop (partial labels) | taidpt (texts)
    n_ctx: int = 16  # learnable context vectors per prompt (all three peers: 16)
    class_specific: bool | None = None  # one context per label (CoOp's CSC); null: the method's own
    epochs: int | None = None  # null: the method's own
    lr: float | None = None  # SGD learning rate; null: the method's own
    batch_size: int | None = None  # null: the method's own
    seed: int = 0  # context initialisation and batch order
    device: str = "auto"
    loss_weight: float | None = None  # the loss's multiplier; null: the method's own (pipeline/peers.py: DualCoOp 0.03)
    coop_loss: str = "ranking"  # CoOp's multi-label loss (COOP_LOSSES): ranking (TaI-DPT's) | bce (ours)
    ctx_init: str | None = None  # initialise the context from these words ("a photo of a", CoOp's); null: random
    taidpt_templates: bool = True  # TaI-DPT trains on its template sentences too (9 x "a photo of a {}." + 80 ImageNet)
    select: str = "last"  # last: the final epoch | val: the best epoch on a held-out slice of the training set

    def check(self, key: str) -> None:
        _one_of(f"{key}.method", self.method, tuple(PEERS))
        if self.loss_weight is not None:
            _positive(f"{key}.loss_weight", self.loss_weight)
        _one_of(f"{key}.coop_loss", self.coop_loss, COOP_LOSSES)
        _one_of(f"{key}.select", self.select, PROMPT_SELECTIONS)
        if self.ctx_init is not None and not self.ctx_init.strip():
            raise ParamsError(
                f"{key}.ctx_init is empty: write the words to start from (CoOp's 'a photo of a') or set it to null"
            )
        if not 1 <= self.n_ctx <= 60:
            raise ParamsError(
                f"{key}.n_ctx = {self.n_ctx!r} is out of range: use 1 to 60 context vectors (the peers use 16)"
            )
        if self.epochs is not None:
            _at_least(f"{key}.epochs", self.epochs, 1)
        if self.lr is not None:
            _positive(f"{key}.lr", self.lr)
        if self.batch_size is not None:
            _at_least(f"{key}.batch_size", self.batch_size, 1)
        _one_of(f"{key}.device", self.device, DEVICES)


@dataclass(frozen=True)
class EvaluateParams:
    split: str = "test"
    integrate_with: str | None = None
    integrate_scaling: str = (
        "global"  # global: each method's whole score matrix scaled to [0, 1] (TaI-DPT's, the paper's policy)
    )
    integrate_weight: float = (
        0.5  # the other method's weight: 0.5 is the paper's "average" (TaI-DPT's script: 0.9 partial, 0.6 few-shot)
    )

    def check(self, key: str) -> None:
        _one_of(f"{key}.integrate_scaling", self.integrate_scaling, INTEGRATE_SCALINGS)
        if not 0 <= self.integrate_weight <= 1:
            raise ParamsError(
                f"{key}.integrate_weight = {self.integrate_weight!r} is out of range: use a weight in "
                "[0, 1] for the other method's scores (0.5 averages them with the adapter's)"
            )
        if self.integrate_with not in (None, INTEGRATE_PROMPT) and not Path(self.integrate_with).is_file():
            raise ParamsError(
                f"{key}.integrate_with = {self.integrate_with!r} is not a file: use 'prompt' (the prompt stage's "
                "scores), point it at a Parquet of another method's scores (image_id + one column per label), "
                "or set it to null"
            )


@dataclass(frozen=True)
class Params:
    prepare: PrepareParams = field(default_factory=PrepareParams)
    generate: GenerateParams = field(default_factory=GenerateParams)
    encode: EncodeParams = field(default_factory=EncodeParams)
    zeroshot: ZeroshotParams = field(default_factory=ZeroshotParams)
    fewshot: FewshotParams = field(default_factory=FewshotParams)
    partial: PartialParams = field(default_factory=PartialParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    prompt: PromptParams = field(default_factory=PromptParams)

    def check(self) -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).check(f.name)
        # what spans keys (the setting, a peer's needs, the splits they read) is checked by pipeline.settings.plan


def load_params(path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None) -> Params:
    """Read and validate params.yaml. Unknown keys are errors: a typo must not silently fall back to a default."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path} not found: run from the project root, or pass the path of params.yaml")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ParamsError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ParamsError(
            f"{path}: the file should be a mapping of sections (prepare:, encode:, ...), "
            f"not a {type(raw).__name__}; start from the repository's params.yaml"
        )
    for dotted, value in (overrides or {}).items():
        *parents, last = dotted.split(".")
        node = raw
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    params = _build(Params, raw, "", path)
    params.check()
    return params


def _build(cls: type, raw: Any, key: str, path: Path) -> Any:
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: {key or 'the file'} should be a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        where = key or "the top level"
        raise ParamsError(f"{path}: unknown key(s) {unknown} in {where}; known keys are {sorted(known)}")
    kwargs = {}
    for name, value in raw.items():
        kwargs[name] = _coerce(hints[name], value, f"{key}.{name}".lstrip("."), path)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, key: str, path: Path) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value or {}, key, path)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, key, path)
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{path}: {key} = {value!r} should be a mapping, e.g. {{train: a.json, test: b.json}}")
        return {str(k): _coerce(args[1], v, f"{key}.{k}", path) for k, v in value.items()}
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ParamsError(f"{path}: {key} = {value!r} should be a list, e.g. [{value!r}]")
        return tuple(_coerce(args[0], v, key, path) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{path}: {key} = {value!r} should be true or false")
        return value
    if hint in (int, float) and isinstance(value, str) and YAML12_NUMBER.fullmatch(value.strip()):
        value = float(value)  # 1e-4 / 1e12: numbers to YAML 1.2 and DVC, text to PyYAML's YAML 1.1
    if hint in (int, float) and isinstance(value, float) and not math.isfinite(value):
        raise ParamsError(f"{path}: {key} = {value!r} is not a finite number: write a number such as 1.0 or 1.0e-4")
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)  # 1e4 or 1.0e+4, as `dvc exp run -S` may write a large count
    if hint is int and isinstance(value, float):
        raise ParamsError(f"{path}: {key} = {value!r} should be a whole number, e.g. {round(value)}")
    if hint is str and isinstance(value, str):
        return value
    raise ParamsError(f"{path}: {key} = {value!r} should be of type {getattr(hint, '__name__', hint)}")


def _one_of(key: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ParamsError(f"{key} = {value!r} is not allowed: use one of {list(choices)}")


def _at_least(key: str, value: float, low: float) -> None:
    if value < low:
        raise ParamsError(f"{key} = {value!r} is too small: use a value >= {low}")


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise ParamsError(f"{key} = {value!r} must be positive")


def _fraction(key: str, value: float) -> None:
    if not 0 <= value <= 1:
        raise ParamsError(f"{key} = {value!r} is out of range: use a value in [0, 1]")


def _multiple_of_32(key: str, value: int) -> None:
    if value < 32 or value % 32:
        raise ParamsError(f"{key} = {value!r}: CLIP needs a positive multiple of 32 (224, 448, ...)")
