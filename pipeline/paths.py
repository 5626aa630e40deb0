"""Where every artifact lives, in one place (dvc.yaml names the same paths)."""

from pathlib import Path

ARTIFACTS = Path("artifacts")

DATA = ARTIFACTS / "data"                      # prepare: <dataset>/labels.parquet, <dataset>/<split>.parquet
TEXTS = ARTIFACTS / "texts.parquet"            # generate
GENERATE_DIR = ARTIFACTS / "generate"          # generate: report.parquet, journal/ (persisted, for resume)
GENERATE_REPORT = GENERATE_DIR / "report.parquet"
GENERATE_JOURNAL = GENERATE_DIR / "journal"
TEXT_EMBEDDINGS = ARTIFACTS / "embeddings" / "text"      # encode_text
IMAGE_EMBEDDINGS = ARTIFACTS / "embeddings" / "images"   # encode_images: <split>-<px>/
IMAGE_SKIPPED = IMAGE_EMBEDDINGS / "skipped.parquet"  # images that could not be read, and why
CACHE = ARTIFACTS / "cache"                    # content-addressed embedding cache; not a DVC out
ZEROSHOT = ARTIFACTS / "zeroshot"              # metrics.json, per_class.parquet, scores.parquet
FEWSHOT = ARTIFACTS / "fewshot"                # support.parquet
PARTIAL = ARTIFACTS / "partial"                # mask.parquet
CENTROIDS = ARTIFACTS / "centroids"            # visual.parquet, combinations.parquet, tsne.png
MODEL = ARTIFACTS / "model"                    # adapter.pt
TRAIN_LOG = ARTIFACTS / "train" / "log.csv"
TRAIN_SUMMARY = ARTIFACTS / "train" / "summary.json"
TRAIN_CHECKPOINT = ARTIFACTS / "train" / "checkpoint.pt"   # persisted: resume after a kill
EVAL = ARTIFACTS / "eval"                      # metrics.json, per_class.parquet, scores.parquet


def labels_path(dataset: str) -> Path:
    return DATA / dataset / "labels.parquet"


def manifest_path(dataset: str, split: str) -> Path:
    return DATA / dataset / f"{split}.parquet"


def missing_images_path(dataset: str, split: str) -> Path:
    """Listed images not found on disk (NUS-WIDE), beside the split's manifest."""
    return DATA / dataset / f"missing_{split}.parquet"


def image_embeddings_dir(split: str, resolution: int) -> Path:
    return IMAGE_EMBEDDINGS / f"{split}-{resolution}"
