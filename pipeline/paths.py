"""Where every artifact lives, in one place (dvc.yaml names the same paths).

Three homes, by who keeps them:
- `artifacts/`: stage outputs, cached by DVC and ignored by git (tables, embeddings, the model).
- `reports/`: metrics and plots, small and kept by git, so `dvc exp show`, `dvc metrics diff` and
  `dvc plots diff` compare any two commits or experiments.
- the per-user cache folder (`cache_root`): the embedding cache (`embedding_cache_dir`), shared by every
  workspace, queued experiment and `tai predict` run, and the resumable state of long stages (`resume_dir`:
  the generate journal, training checkpoints, dense staging), keyed by what determines their result. None of
  it is a DVC out: a queued or `--temp` experiment runs in a fresh copy, where DVC could not restore such an
  out, and would rerun the stage for its absence (docs/pipeline.md, "What survives a kill, a queue, --temp").
"""

import os
from pathlib import Path

DATA = Path("data")  # raw datasets: user folders (`dvc add`) and the download stage's out
DOWNLOADS = DATA / "downloads"  # download: <dataset>/ (persisted, DVC-cached)

ARTIFACTS = Path("artifacts")
PREPARED = ARTIFACTS / "data"  # prepare: <dataset>/labels.parquet, <dataset>/<split>.parquet
TEXTS = ARTIFACTS / "texts.parquet"  # generate
GENERATE_DIR = ARTIFACTS / "generate"  # generate: report.parquet, mentions.parquet
GENERATE_REPORT = GENERATE_DIR / "report.parquet"
GENERATE_MENTIONS = GENERATE_DIR / "mentions.parquet"  # labels `mentions` would add, most often first
TEXT_EMBEDDINGS = ARTIFACTS / "embeddings" / "text"  # encode_text
EVAL_EMBEDDINGS = ARTIFACTS / "embeddings" / "eval"  # encode_eval_images: <split>-<px>/, skipped.parquet
SUPPORT_EMBEDDINGS = ARTIFACTS / "embeddings" / "support"  # encode_support_images: the few-shot support images
PARTIAL_EMBEDDINGS = ARTIFACTS / "embeddings" / "partial"  # encode_partial_images: the partially labelled split
DENSE_EMBEDDINGS = ARTIFACTS / "embeddings" / "dense"  # encode_dense_images: per-location features (prompt methods)
ZEROSHOT = ARTIFACTS / "zeroshot"  # per_class.parquet, scores.parquet
FEWSHOT_SUPPORT = ARTIFACTS / "fewshot" / "support.parquet"
PARTIAL_MASK = ARTIFACTS / "partial" / "mask.parquet"
CENTROIDS = ARTIFACTS / "centroids"  # visual.parquet, combinations.parquet
CENTROIDS_VISUAL = CENTROIDS / "visual.parquet"
CENTROIDS_COMBINATIONS = CENTROIDS / "combinations.parquet"
CENTROIDS_GAPS = CENTROIDS / "gaps.parquet"  # per-label and global text-to-image gaps (partial.shift)
MODEL = ARTIFACTS / "model" / "adapter.pt"
EVAL = ARTIFACTS / "eval"  # per_class.parquet, scores.parquet
PROMPT = ARTIFACTS / "prompt"  # prompt: per_class.parquet, scores.parquet, context.pt
PROMPT_SCORES = PROMPT / "scores.parquet"  # what evaluate.integrate_with: prompt averages with the adapter
PROMPT_CONTEXT = PROMPT / "context.pt"  # the learned context vectors and what they were trained for

REPORTS = Path("reports")
GENERATE_METRICS = REPORTS / "generate.json"
ZEROSHOT_METRICS = REPORTS / "zeroshot.json"
TRAIN_METRICS = REPORTS / "train.json"
TRAIN_LOG = REPORTS / "train_log.csv"  # a DVC plot: loss per epoch
CENTROIDS_PLOT = REPORTS / "centroids.png"  # the paper's Fig. 7 (placeholder when partial labels are off)
EVAL_METRICS = REPORTS / "eval.json"
PROMPT_METRICS = REPORTS / "prompt.json"
PROMPT_LOG = REPORTS / "prompt_log.csv"  # a DVC plot: the prompt method's loss per epoch
PER_CLASS_PLOT = REPORTS / "per_class.csv"  # per-class AP of each method, the adapter's P/R/F1; beside it the
# DVC plots' data per_class_ap.csv and pr_<method>.csv (result_plots)
ZEROSHOT_SCORES = ZEROSHOT / "scores.parquet"  # the CLIP baseline's scores (evaluate's per-class plot compares them)
MODALITY_GAP_PLOT = REPORTS / "modality_gap.png"  # text and image embeddings of a few labels, before/after noise
ENVIRONMENT_METRICS = REPORTS / "environment.json"  # evaluate: library versions, image runtime, CPU/GPU (strings)

CACHE_ENV = "TAI_CACHE_DIR"


def labels_path(dataset: str) -> Path:
    return PREPARED / dataset / "labels.parquet"


def manifest_path(dataset: str, split: str) -> Path:
    return PREPARED / dataset / f"{split}.parquet"


# Image embeddings by purpose: what is scored (eval) and what the adapter learns from in the few-shot
# (support) and partial-label (partial) settings; one encode stage each (`encode_<purpose>_images`).
IMAGE_EMBEDDINGS = {"eval": EVAL_EMBEDDINGS, "support": SUPPORT_EMBEDDINGS, "partial": PARTIAL_EMBEDDINGS}


def image_embeddings_dir(root: Path, split: str, resolution: int) -> Path:
    """`root` is EVAL_EMBEDDINGS (what is scored), SUPPORT_EMBEDDINGS or PARTIAL_EMBEDDINGS (what the
    adapter learns from in the few-shot and partial-label settings)."""
    return root / f"{split}-{resolution}"


def skipped_images_path(root: Path) -> Path:
    return root / "skipped.parquet"


def cache_root() -> Path:
    """$TAI_CACHE_DIR, else the per-user cache folder (platformdirs: ~/.cache/tai-adapter on Linux)."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    return user_cache_root()


def user_cache_root() -> Path:
    """The per-user cache folder (platformdirs: ~/.cache/tai-adapter on Linux)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("tai-adapter", appauthor=False))


def llm_probe_cache_dir() -> Path:
    """Where the LLM decode probe (pipeline.generate.probe) remembers the (llama-cpp-python, CPU, model)
    triples that decoded: <cache_root>/llm-probe, beside the embeddings and the resume state."""
    return cache_root() / "llm-probe"


def embedding_cache_dir() -> Path:
    """The content-addressed CLIP embedding cache: $TAI_CACHE_DIR itself (as before resume state joined it),
    else ~/.cache/tai-adapter/embeddings on Linux. Never inside a workspace or an input folder."""
    return cache_root() if os.environ.get(CACHE_ENV) else cache_root() / "embeddings"


def resume_dir(stage: str) -> Path:
    """Where `stage` keeps what a killed run resumes from: <cache_root>/resume/<stage>. Outside the workspace
    (a queued or --temp experiment's fresh copy finds it too) and never a DVC out; entries are named by a
    fingerprint of what determines the result, so runs of other settings never resume from each other."""
    return cache_root() / "resume" / stage


def generate_journal_dir() -> Path:
    """generate's journal: <fingerprint>/ folders of finished captions (pipeline.generate.journal)."""
    return resume_dir("generate")


def train_checkpoint(fingerprint: str) -> Path:
    """train's per-epoch checkpoint for one training set and its params (pipeline.method.train.run_fingerprint)."""
    return resume_dir("train") / f"{fingerprint}.pt"


def prompt_checkpoint(fingerprint: str) -> Path:
    """The prompt stage's per-epoch checkpoint for one method, its values and inputs."""
    return resume_dir("prompt") / f"{fingerprint}.pt"


def dense_staging(key: str) -> Path:
    """encode_dense_images' finished batches for one image set (pipeline.encoding.dense.staging_key)."""
    return resume_dir("dense") / key


def missing_images_path(dataset: str, split: str) -> Path:
    """Listed images not found on disk (NUS-WIDE), beside the split's manifest."""
    return PREPARED / dataset / f"missing_{split}.parquet"
