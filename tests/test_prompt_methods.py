"""The prompt methods (pipeline/prompt/) learn a learnable answer, and their pieces are what the peers'
code computes: CLIP's own text path, the ranking and asymmetric losses, DualCoOp's dense form, the
schedule. Synthetic worlds: tests/prompt_world.py. No timings."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from pipeline.evaluation.metrics import mean_ap
from prompt_world import NAMES, PromptWorld, tiny_clip_model


@pytest.fixture(scope="module")
def clip_model():
    return tiny_clip_model()


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- shared pieces ---------------------------------------------------------------------------------


def test_a_prompt_of_word_embeddings_is_clips_own_text_feature(clip_model, one_thread):
    """The learner is exactly CLIP's text path: with the context set to the embeddings of real words,
    the prompt's feature is encode_text of the sentence."""
    import clip

    from pipeline.prompt.text import FrozenTextEncoder, LabelPrompts

    prompts = LabelPrompts(FrozenTextEncoder(clip_model), NAMES[:3], 4, class_specific=False)
    words = clip.tokenize(["a photo of a"])[0, 1:5]
    with torch.no_grad():
        prompts.context.ctx.copy_(clip_model.token_embedding(words))
        expected = clip_model.encode_text(clip.tokenize([f"a photo of a {name}." for name in NAMES[:3]])).float()
        got = prompts()
    torch.testing.assert_close(got, expected / expected.norm(dim=-1, keepdim=True), atol=1e-5, rtol=1e-5)
    # only the context learns
    assert [name for name, p in prompts.named_parameters() if p.requires_grad] == ["context.ctx"]


def test_class_specific_context_has_one_context_per_label(clip_model):
    from pipeline.prompt.text import FrozenTextEncoder, LabelPrompts

    encoder = FrozenTextEncoder(clip_model)
    assert LabelPrompts(encoder, NAMES, 16, False).context.ctx.shape == (16, 64)
    assert LabelPrompts(encoder, NAMES, 16, True).context.ctx.shape == (len(NAMES), 16, 64)


def test_ranking_loss_is_the_sum_over_positive_negative_pairs():
    from pipeline.prompt.losses import ranking_loss

    scores = torch.tensor([[0.2, 1.5, -0.3, 0.9], [0.0, 0.1, 0.2, 0.3]])
    targets = torch.tensor([[1.0, 0, 0, 1], [0, 0, 0, 0]])
    by_hand = [
        sum(
            max(0.0, 1 - scores[b, p] + scores[b, n])
            for p, n in itertools.product(range(4), range(4))
            if targets[b, p] == 1 and targets[b, n] == 0
        )
        for b in range(2)
    ]
    assert ranking_loss(scores, targets).item() == pytest.approx(float(sum(by_hand)) / 2, abs=1e-6)


def test_asymmetric_loss_ignores_unknown_entries_and_matches_its_formula():
    from pipeline.prompt.losses import dual_asymmetric_loss

    logits = torch.tensor([[[0.3, -1.0, 2.0]], [[1.2, 0.5, -0.4]]]).reshape(1, 2, 3)  # [:, 0] negative, [:, 1] positive
    known = torch.tensor([[1.0, 1.0, 0.0]])
    loss = dual_asymmetric_loss(logits, torch.tensor([[1.0, 0.0, 1.0]]), known)
    # the unknown third entry may carry any target: nothing changes
    assert dual_asymmetric_loss(logits, torch.tensor([[1.0, 0.0, 0.0]]), known).item() == loss.item()
    p = torch.softmax(logits, dim=1)[0]
    p_pos0, p_neg1 = p[1, 0].item(), min(1.0, p[0, 1].item() + 0.05)
    by_hand = -(math.log(p_pos0) * (1 - p_pos0) ** 1 + math.log(p_neg1) * (1 - p_neg1) ** 2)
    assert loss.item() == pytest.approx(by_hand, rel=1e-5)


def test_schedule_is_one_constant_warmup_epoch_then_cosine():
    from pipeline.prompt.fit import epoch_lr

    assert epoch_lr(0, 0.002, 200) == 1e-5
    assert epoch_lr(1, 0.002, 200) == 0.002  # Dassl: the cosine counts from the end of the warm-up
    assert epoch_lr(2, 0.002, 200) == pytest.approx(0.002 * (1 + math.cos(math.pi / 200)) / 2)
    assert epoch_lr(101, 0.002, 200) == pytest.approx(0.001)  # the whole sequence: tests/test_peer_fidelity.py
    assert epoch_lr(0, 0.5, 1) == 0.5  # one epoch: nothing to warm up


# ---- dense features --------------------------------------------------------------------------------


def test_dualcoops_dense_form_is_built_exactly_from_the_stored_one(clip_model):
    """DualCoOp projects (mean, locations) + positional embedding; we store locations without it and
    add Wc Wv p: the same numbers."""
    import torch.nn.functional as F

    from pipeline.encoding.dense import dense_features, feature_map, positional_term, with_positions

    visual = clip_model.visual.float()
    pixels = torch.randn(2, 3, 64, 64, generator=seeded(1))
    stored = dense_features(visual, pixels)
    assert stored.shape == (2, 4, 64)  # 64 px: a 2 x 2 grid
    with torch.no_grad():
        x = feature_map(visual, pixels).flatten(2).permute(2, 0, 1)  # (HW, batch, C), as DualCoOp's AttentionConv
        x = torch.cat([x.mean(dim=0, keepdim=True), x]) + visual.attnpool.positional_embedding[:, None, :]
        a = visual.attnpool
        theirs = F.linear(F.linear(x, a.v_proj.weight, a.v_proj.bias), a.c_proj.weight, a.c_proj.bias).permute(1, 0, 2)
        ours = with_positions(stored, positional_term(a, a.positional_embedding, 2))
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_dense_features_round_trip_through_float16_shards(clip_model, tmp_path):
    from pipeline.encoding.dense import DenseFeatures, DenseWriter, bytes_per_image

    features = torch.randn(5, 4, 64, generator=seeded(2))
    with DenseWriter(tmp_path / "set" / "part-00000.arrow", 4, 64, {"resolution": 64}) as writer:
        writer.write(["a", "b"], features[:2].numpy())
        writer.write(["c", "d", "e"], features[2:].numpy())
    stored = DenseFeatures(tmp_path / "set")
    assert stored.ids == list("abcde") and stored.metadata["resolution"] == "64"
    torch.testing.assert_close(stored.take([4, 0, 2]), features[[4, 0, 2]].half().float())
    assert bytes_per_image(224, 1024) == 49 * 1024 * 2 and bytes_per_image(448, 1024) == 196 * 1024 * 2


# ---- each method learns ----------------------------------------------------------------------------


def test_coop_learns_the_label_directions(clip_model, one_thread):
    from pipeline.prompt.coop import CoOp, train_coop

    world = PromptWorld(0)
    _, train_images, train_targets = world.images(96)
    _, test_images, test_targets = world.images(200)
    model = CoOp(clip_model, NAMES, 4, class_specific=True, generator=seeded())
    before = mean_ap(model.scores(test_images).numpy(), test_targets.numpy())
    history = train_coop(model, train_images, train_targets, epochs=30, lr=0.5, batch_size=32, warmup_epochs=0)
    after = mean_ap(model.scores(test_images).numpy(), test_targets.numpy())
    assert history[-1]["loss"] < history[0]["loss"]
    assert before < 0.5 and after > 0.75, (before, after)


def test_dualcoop_learns_and_its_positive_prompt_is_the_positive_one(clip_model, one_thread):
    """Trained on partial labels (half the entries unknown): the positive prompts find the labels'
    locations; scoring with the two prompts exchanged ranks the images no better than chance."""
    from pipeline.prompt.dualcoop import DualCoOp, train_dualcoop

    world = PromptWorld(1)
    train_dense, _, train_targets = world.images(128)
    known = world.known(train_targets, 0.5)
    test_dense, _, test_targets = world.images(200)
    model = DualCoOp(clip_model, NAMES, torch.zeros(5, 64), 4, class_specific=True, generator=seeded())
    with torch.no_grad():  # the tiny CLIP puts two random contexts far apart (real CLIP does not): start equal
        model.negative.context.ctx.copy_(model.positive.context.ctx)

    def test_map(positive, negative) -> float:
        with torch.no_grad():
            probs = model.logits(test_dense, positive(), negative()).softmax(dim=1)[:, 1]
        return mean_ap(probs.numpy(), test_targets.numpy())

    before = test_map(model.positive, model.negative)
    train_dualcoop(
        model, lambda rows: train_dense[rows], train_targets, known, epochs=60, lr=0.001, batch_size=32, warmup_epochs=0
    )
    after = mean_ap(model.scores(lambda rows: test_dense[rows], len(test_dense)).numpy(), test_targets.numpy())
    assert before < 0.35 and after > 0.6, (before, after)
    assert test_map(model.negative, model.positive) < 0.35
    with torch.no_grad():
        alignment = [
            (prompts() * world.directions).sum(dim=1).mean().item() for prompts in (model.positive, model.negative)
        ]
    assert alignment[0] > alignment[1] + 0.1, alignment


def test_dualcoop_ignores_the_unknown_labels(clip_model, one_thread):
    """The same training with the unknown entries' targets flipped gives the same prompts."""
    from pipeline.prompt.dualcoop import DualCoOp, train_dualcoop

    world = PromptWorld(2)
    dense, _, targets = world.images(32)
    known = world.known(targets, 0.5)
    results = []
    for flipped in (targets, torch.where(known > 0, targets, 1 - targets)):
        model = DualCoOp(clip_model, NAMES, torch.zeros(5, 64), 4, class_specific=True, generator=seeded())
        train_dualcoop(
            model, lambda rows: dense[rows], flipped, known, epochs=2, lr=0.001, batch_size=16, warmup_epochs=0
        )
        results.append(model.positive.context.ctx.detach().clone())
    torch.testing.assert_close(results[0], results[1])


def test_taidpt_learns_from_texts_and_scores_images(clip_model, one_thread):
    from pipeline.prompt.taidpt import TaIDPT, TextTokens, train_taidpt

    world = PromptWorld(3)
    text_global, token_rows, text_targets = world.texts(256)
    test_dense, test_global, test_targets = world.images(200)
    model = TaIDPT(clip_model, NAMES, 4, class_specific=True, generator=seeded())

    def scores() -> float:
        return mean_ap(model.scores(test_global, lambda rows: test_dense[rows]).numpy(), test_targets.numpy())

    before = scores()
    history = train_taidpt(
        model, TextTokens(text_global, token_rows), text_targets, epochs=30, lr=0.5, batch_size=64, warmup_epochs=0
    )
    assert history[-1]["loss"] < history[0]["loss"] / 2
    assert before < 0.5 and scores() > 0.85
    # both branches learned: each alone ranks the images well
    global_logits, local_logits = model.image_logits(test_global, test_dense)
    assert mean_ap(global_logits.numpy(), test_targets.numpy()) > 0.8
    assert mean_ap(local_logits.numpy(), test_targets.numpy()) > 0.7


def test_taidpt_text_tokens_are_clips_token_features(clip_model, one_thread):
    """Each text's end-token feature is CLIP's text embedding; its rows stop at the end token."""
    import clip

    from pipeline.prompt.taidpt import TextTokens
    from pipeline.prompt.text import FrozenTextEncoder

    texts = ["a cat on a mat.", "two dogs and a car in the rain near a tree."]
    tokens = TextTokens.encode(FrozenTextEncoder(clip_model), texts, batch_size=1)
    with torch.no_grad():
        expected = clip_model.encode_text(clip.tokenize(texts)).float()
    torch.testing.assert_close(tokens.global_features, expected, atol=1e-5, rtol=1e-5)
    assert tokens.lengths.tolist() == (clip.tokenize(texts).argmax(dim=-1) + 1).tolist()
    global_, padded, mask = tokens.batch(torch.tensor([1, 0]))
    assert padded.shape[1] == int(tokens.lengths.max()) and mask.sum(dim=1).tolist() == tokens.lengths[[1, 0]].tolist()


def test_an_empty_training_set_stops_with_one_line(clip_model):
    from pipeline.errors import UserError
    from pipeline.prompt.coop import CoOp, train_coop

    model = CoOp(clip_model, NAMES, 4, generator=seeded())
    with pytest.raises(UserError, match="nothing to train on"):
        train_coop(model, torch.zeros(0, 64), torch.zeros(0, len(NAMES)), epochs=1, lr=0.1, batch_size=8)
