"""The peers as their authors' code computes them (issue 25): each forward against our own re-statement of
upstream's arithmetic on random tensors (DualCoOp `models/dualcoop.py: forward`, TaI-DPT
`trainers/Caption_distill_double.py: CustomCLIP.forward`), Dassl's lr sequence from torch's own cosine
scheduler, TaI-DPT's ensemble rule on hand-made scores, and the params that make the rest switchable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import ParamsError, load_params
from prompt_world import NAMES, PromptWorld, tiny_clip_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip_model():
    return tiny_clip_model()


def unit(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return x / x.norm(dim=dim, keepdim=True)


# ---- DualCoOp: the constants 20 and 5, and which prompt weighs the locations ---------------------------


def upstream_dualcoop(features: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """DualCoOp's forward re-stated: features (b, C, HW) channel-first; the text features are the negative
    prompts then the positive ones, a 1-d convolution with kernel size 1 is a matrix product; softmax over
    locations of the positive half's similarities weighs both halves; out (b, 2, labels)."""
    text = unit(torch.cat([negative, positive]))
    image = unit(features, dim=1)
    similarity = 20 * torch.einsum("bcl,kc->bkl", image, text)  # (b, 2 x labels, HW)
    n = positive.shape[0]
    weights = similarity[:, n:].softmax(dim=-1).repeat(1, 2, 1)
    return (5 * (similarity * weights).sum(-1)).reshape(len(features), 2, n)


def test_dualcoop_logits_equal_upstreams_forward(clip_model):
    from pipeline.encoding.dense import with_positions
    from pipeline.prompt.dualcoop import DualCoOp

    g = torch.Generator().manual_seed(0)
    dense, positional = torch.randn(3, 4, 64, generator=g), torch.randn(5, 64, generator=g)
    positive, negative = unit(torch.randn(len(NAMES), 64, generator=g)), unit(torch.randn(len(NAMES), 64, generator=g))
    model = DualCoOp(clip_model, NAMES, positional, 4)
    got = model.logits(dense, positive, negative)
    expected = upstream_dualcoop(with_positions(dense, positional).permute(0, 2, 1), positive, negative)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # the weights come from the positive prompt: exchanging the prompts is not a relabelling of the output
    assert not torch.allclose(model.logits(dense, negative, positive).flip(1), got, atol=1e-3)


def test_dualcoops_integration_score_is_the_logit_difference(clip_model):
    """Delta = positive - negative logit; the positive probability is its sigmoid and saturates in float32."""
    from pipeline.prompt.dualcoop import DualCoOp, logit_difference

    model = DualCoOp(clip_model, NAMES, torch.zeros(5, 64), 4)
    dense = torch.randn(6, 4, 64, generator=torch.Generator().manual_seed(1))
    logits = model(dense).detach()
    scores = model.scores(lambda rows: dense[rows], len(dense))
    torch.testing.assert_close(scores, logits[:, 1] - logits[:, 0])
    torch.testing.assert_close(torch.sigmoid(scores), logits.softmax(dim=1)[:, 1])
    big = torch.tensor([[[0.0], [20.0]], [[0.0], [30.0]]])  # two confident positives
    assert (big.softmax(dim=1)[:, 1] == 1.0).all() and logit_difference(big)[0] < logit_difference(big)[1]


# ---- TaI-DPT: the pooled branches at test (images) and in training (texts) -------------------------------


def upstream_taidpt_local(
    features_lbd: torch.Tensor, local_text: torch.Tensor, spatial_scale: float, padding: torch.Tensor | None = None
) -> torch.Tensor:
    """TaI-DPT's local branch re-stated: positions first (L, b, d); cosines to the local prompts; padding
    (token id 0) pushed down by 10000 before the softmax over positions at `spatial_scale`; the logit is
    4 x the softmax-weighted sum of the (pushed) cosines."""
    cosines = unit(features_lbd) @ unit(local_text).T  # (L, b, labels)
    if padding is not None:  # (b, L) True at padding
        cosines = cosines + (padding.T.float() * -10000)[:, :, None]
    weights = (cosines * spatial_scale).softmax(dim=0)
    return (4.0 * cosines * weights).sum(0)


def test_taidpts_test_branches_equal_upstreams_forward(clip_model):
    from pipeline.prompt.taidpt import TaIDPT

    g = torch.Generator().manual_seed(2)
    model = TaIDPT(clip_model, NAMES, 4, generator=g)
    images, dense = torch.randn(3, 64, generator=g), torch.randn(3, 7, 64, generator=g)
    global_logits, local_logits = model.image_logits(images, dense)
    with torch.no_grad():
        global_text, local_text = model.global_prompts(), model.local_prompts()
    torch.testing.assert_close(global_logits, 4.0 * unit(images) @ unit(global_text).T)
    torch.testing.assert_close(
        local_logits, upstream_taidpt_local(dense.permute(1, 0, 2), local_text, 40.0), rtol=1e-5, atol=1e-5
    )


def test_taidpts_training_branches_equal_upstreams_forward(clip_model):
    from pipeline.prompt.taidpt import TaIDPT

    g = torch.Generator().manual_seed(3)
    model = TaIDPT(clip_model, NAMES, 4, generator=g)
    end_features, tokens = torch.randn(3, 64, generator=g), torch.randn(3, 9, 64, generator=g)
    mask = torch.arange(9)[None, :] < torch.tensor([[9], [5], [3]])  # ragged texts, padded
    with torch.no_grad():
        global_logits, local_logits = model.text_logits(end_features, tokens, mask)
        global_text, local_text = model.global_prompts(), model.local_prompts()
    torch.testing.assert_close(global_logits, 4.0 * unit(end_features) @ unit(global_text).T)
    expected = upstream_taidpt_local(tokens.permute(1, 0, 2), local_text, 50.0, padding=~mask)
    torch.testing.assert_close(local_logits, expected, rtol=1e-5, atol=1e-5)


# ---- Dassl's schedule -----------------------------------------------------------------------------------


def test_schedule_is_dassls_sequence():
    """Dassl's build_lr_scheduler: one constant warm-up epoch at 1e-5, then torch's CosineAnnealingLR,
    whose count starts after the warm-up (WARMUP_RECOUNT): the epoch after the warm-up runs at the full lr."""
    from pipeline.prompt.fit import epoch_lr

    lr, epochs = 0.002, 50
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, float(epochs))
    expected = [1e-5]
    for _ in range(epochs - 1):
        expected.append(cosine.get_last_lr()[0])
        optimizer.step()
        cosine.step()
    got = [epoch_lr(e, lr, epochs) for e in range(epochs)]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    assert got[1] == lr


# ---- TaI-DPT's ensemble rule: the default integration ---------------------------------------------------


def test_integration_default_is_taidpts_whole_matrix_rule_to_1e_9(tmp_path):
    """evaluate.integrate_scaling global: each method's whole score matrix min-max scaled (no axis), then
    (1 - w) x ours + w x theirs, w = evaluate.integrate_weight (0.5: the paper's "average")."""
    import json

    import polars as pl

    from pipeline.data.labels import LabelSet
    from pipeline.evaluation.metrics import integrate, mean_ap
    from pipeline.evaluation.results import write_evaluation

    labels = LabelSet.from_names(["cat", "dog"])
    ids = ["i0", "i1", "i2", "i3"]
    adapter = np.array([[0.9, 0.1], [0.2, 0.7], [0.6, 0.4], [0.3, 0.8]])  # spans 0.1..0.9 (0.8)
    other = np.array([[12.0, -3.0], [4.0, 1.0], [8.0, -1.0], [20.0, 5.0]])  # spans -3..20 (23)
    targets = np.array([[1, 0], [0, 1], [1, 0], [0, 1]])
    ours = (adapter - 0.1) / 0.8
    theirs = (other + 3) / 23
    by_hand = np.array([[(ours[i, c] + theirs[i, c]) / 2 for c in range(2)] for i in range(4)])
    np.testing.assert_allclose(integrate(adapter, other), by_hand, rtol=0, atol=1e-9)
    weighted = np.array([[0.1 * ours[i, c] + 0.9 * theirs[i, c] for c in range(2)] for i in range(4)])
    np.testing.assert_allclose(integrate(adapter, other, "global", 0.9), weighted, rtol=0, atol=1e-9)
    order = [2, 0, 3, 1]
    pl.DataFrame({"image_id": [ids[i] for i in order], "cat": other[order, 0], "dog": other[order, 1]}).write_parquet(
        tmp_path / "scores.parquet"
    )
    metrics = write_evaluation(
        tmp_path / "eval",
        tmp_path / "eval.json",
        ids,
        adapter,
        targets,
        labels,
        integrate_with=str(tmp_path / "scores.parquet"),
    )
    assert abs(metrics["integrated_map"] - mean_ap(by_hand, targets)) < 1e-9
    assert json.loads((tmp_path / "eval.json").read_text())["integrated_map"] == metrics["integrated_map"]
    params = load_params(ROOT / "params.yaml")
    assert params.evaluate.integrate_scaling == "global" and params.evaluate.integrate_weight == 0.5


# ---- the loss weight, the CoOp loss, the context initialisation, the templates ---------------------------


def test_loss_weight_multiplies_the_loss_and_defaults_to_dualcoops_readme(clip_model, one_thread):
    from pipeline.prompt.dualcoop import DualCoOp, train_dualcoop

    world = PromptWorld(4)
    dense, _, targets = world.images(16)
    known = world.known(targets, 0.5)
    losses = []
    for weight in (1.0, 0.03):
        model = DualCoOp(clip_model, NAMES, torch.zeros(5, 64), 4, generator=torch.Generator().manual_seed(0))
        history = train_dualcoop(
            model, lambda rows: dense[rows], targets, known, epochs=1, lr=1e-12, batch_size=16, loss_weight=weight
        )
        losses.append(history[0]["loss"])
    assert losses[1] == pytest.approx(0.03 * losses[0], rel=1e-5)
    from pipeline.prompt.values import resolved

    params = load_params(ROOT / "params.yaml", {"prompt.method": "dualcoop", "partial.known_proportion": 0.5})
    assert params.prompt.loss_weight is None and resolved("dualcoop", params)["loss_weight"] == 0.03
    assert resolved("taidpt", load_params(ROOT / "params.yaml", {"prompt.method": "taidpt"}))["loss_weight"] == 1.0


def test_coop_trains_with_either_multilabel_loss(clip_model, one_thread):
    from pipeline.evaluation.metrics import mean_ap
    from pipeline.prompt.coop import CoOp, train_coop

    world = PromptWorld(0)
    _, images, targets = world.images(64)
    _, test_images, test_targets = world.images(100)
    results = {}
    for loss in ("ranking", "bce"):
        model = CoOp(clip_model, NAMES, 4, class_specific=True, generator=torch.Generator().manual_seed(0))
        history = train_coop(model, images, targets, epochs=8, lr=0.5, batch_size=32, warmup_epochs=0, loss=loss)
        results[loss] = (
            history[0]["loss"],
            history[-1]["loss"],
            mean_ap(model.scores(test_images).numpy(), test_targets.numpy()),
        )
    assert results["ranking"][1] < results["ranking"][0] and results["bce"][1] < results["bce"][0], results
    assert results["ranking"][0] != pytest.approx(results["bce"][0])  # two different objectives


def test_ctx_init_starts_from_the_words(clip_model, one_thread):
    """prompt.ctx_init 'a photo of a': the untrained prompt is CLIP's own 'a photo of a <name>.', and the
    words' token count replaces n_ctx, as in CoOp."""
    import clip

    from pipeline.prompt.text import FrozenTextEncoder, LabelPrompts

    for class_specific in (False, True):
        prompts = LabelPrompts(FrozenTextEncoder(clip_model), NAMES[:3], 16, class_specific, ctx_init="a photo of a")
        assert prompts.context.ctx.shape[-2] == 4
        with torch.no_grad():
            expected = clip_model.encode_text(clip.tokenize([f"a photo of a {n}." for n in NAMES[:3]])).float()
            got = prompts()
        torch.testing.assert_close(got, unit(expected), atol=1e-5, rtol=1e-5)


def test_taidpts_training_set_adds_its_template_sentences():
    from pipeline.prompt.templates import IMAGENET_TEMPLATES, with_templates

    assert len(IMAGENET_TEMPLATES) == 80 and len(set(IMAGENET_TEMPLATES)) == 80
    sentences, targets = with_templates(["a cat and a dog."], np.array([[1.0, 1.0]], np.float32), ["cat", "dog"])
    assert len(sentences) == 1 + 2 * (9 + 80) and targets.shape == (len(sentences), 2)
    cats = [s for s, t in zip(sentences[1:], targets[1:]) if t.tolist() == [1.0, 0.0]]
    # 9 copies, and the ImageNet list's own "a photo of a {}.": 10, as upstream's default_prompt_num says
    assert cats.count("a photo of a cat.") == 10 and "a bad photo of a cat." in cats and len(cats) == 89
    assert targets[1:].sum(axis=1).tolist() == [1.0] * (len(sentences) - 1)  # single-label texts
    params = load_params(ROOT / "params.yaml", {"prompt.method": "taidpt"})
    assert params.prompt.taidpt_templates is True


# ---- prompt.select: val picks the epoch on a held-out slice of the training set ------------------------


def test_select_val_keeps_the_best_epochs_prompts(clip_model, one_thread):
    from pipeline.prompt.coop import CoOp, train_coop
    from pipeline.prompt.fit import held_out

    train, val = held_out(50, 0, 0.2)
    assert len(val) == 10 and set(train.tolist()).isdisjoint(val.tolist()) and len(train) + len(val) == 50
    assert torch.equal(held_out(50, 0, 0.2)[1], val) and not torch.equal(held_out(50, 1, 0.2)[1], val)
    world = PromptWorld(5)
    _, images, targets = world.images(32)
    model = CoOp(clip_model, NAMES, 4, class_specific=True, generator=torch.Generator().manual_seed(0))
    snapshots, values = [], iter([0.2, 0.9, 0.4, 0.1])

    def held_out_map() -> float:  # a scripted held-out mAP per epoch; the prompts it saw are kept
        snapshots.append(model.prompts.context.ctx.detach().clone())
        return next(values)

    history = train_coop(
        model, images, targets, epochs=4, lr=0.5, batch_size=16, warmup_epochs=0, select_by=held_out_map
    )
    assert [row["val_map"] for row in history] == [0.2, 0.9, 0.4, 0.1]
    torch.testing.assert_close(model.prompts.context.ctx.detach(), snapshots[1])
    assert not torch.equal(snapshots[1], snapshots[3])


# ---- the new params fail fast, naming the key ------------------------------------------------------------


@pytest.mark.parametrize(
    "override, key",
    [
        ({"evaluate.integrate_scaling": "other"}, "evaluate.integrate_scaling"),
        ({"evaluate.integrate_weight": 1.5}, "evaluate.integrate_weight"),
        ({"prompt.loss_weight": 0}, "prompt.loss_weight"),
        ({"prompt.coop_loss": "softmax"}, "prompt.coop_loss"),
        ({"prompt.select": "test"}, "prompt.select"),
        ({"prompt.ctx_init": " "}, "prompt.ctx_init"),
    ],
)
def test_new_peer_params_are_refused_naming_the_key(override, key):
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        load_params(ROOT / "params.yaml", override)
