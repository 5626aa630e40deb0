"""The generate stage: captions for random label combinations, from an LLM or templates.

from pipeline.generate import generate_texts
generate_texts(params.generate, LabelSet.read(labels_path), texts_path=..., report_path=..., journal_dir=...)
"""

from pipeline.generate.backends import BackendError, LlamaCppBackend, OpenAIBackend, Reply, make_backend
from pipeline.generate.captions import REPORT_SCHEMA, TEXTS_SCHEMA, GenerateError, GenerateSummary, generate_texts
from pipeline.generate.combinations import Combination, join_labels, plan_combinations
from pipeline.generate.models import model_identity, resolve_model
from pipeline.generate.parse import Parsed, parse_answer
from pipeline.generate.tokens import CLIP_CONTEXT, clip_token_count

__all__ = [
    "BackendError",
    "CLIP_CONTEXT",
    "Combination",
    "GenerateError",
    "GenerateSummary",
    "LlamaCppBackend",
    "OpenAIBackend",
    "Parsed",
    "REPORT_SCHEMA",
    "Reply",
    "TEXTS_SCHEMA",
    "clip_token_count",
    "generate_texts",
    "join_labels",
    "make_backend",
    "model_identity",
    "parse_answer",
    "plan_combinations",
    "resolve_model",
]
