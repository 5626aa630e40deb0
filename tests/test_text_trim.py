"""Text encoding up to each batch's longest caption, in batches of similar length, is exact."""

import numpy as np
import torch

from pipeline.encoding.embeddings import EmbeddingCache

CAPTIONS = [
    "a dog.",
    " ".join(["a cat sitting next to a red car under a tall tree"] * 6),  # ~70 tokens
    "cat",
    "there are a cat, a dog and a person in the photo.",
    " ".join(["tree"] * 120),  # over 77: truncated alike
    "",
    "a picture showing cars and trees.",
]


def padded(encoder, texts):
    import clip

    with torch.no_grad():
        return encoder.model.encode_text(clip.tokenize(texts, truncate=True)).float().numpy()


def test_trimmed_bucketed_texts_equal_padding_to_77(tmp_path, tiny_clip, one_thread):
    from pipeline.encoding.encode import encode_texts
    from pipeline.encoding.load import load_clip

    encoder = load_clip(str(tiny_clip), "cpu")
    seen, calls = [], []

    def record(module, args, out):
        seen.append(args[0].shape[1])
        calls.append(args[0].shape[0])

    encoder.model.token_embedding.register_forward_hook(record)
    result = encode_texts(encoder, CAPTIONS, EmbeddingCache(tmp_path / "cache"), batch_size=2)
    batches, sizes = list(seen), list(calls)
    expected = padded(encoder, CAPTIONS)
    assert np.abs(result.vectors - expected).max() <= 1e-5
    assert np.abs(expected).max() > 0.1  # the comparison is not between zeros
    # calls shortest first, each cut at its longest caption and at most 2 x 77 tokens (batch_size 2):
    # the short captions are not padded to the long ones
    lengths = sorted(len(encoder.tokenize([t])[0].nonzero()) for t in CAPTIONS)
    assert batches == sorted(batches) and sum(sizes) == len(CAPTIONS)
    assert all(n * length <= 2 * 77 for n, length in zip(sizes, batches))
    assert batches[0] < 20 and sum(n * length for n, length in zip(sizes, batches)) < sum(lengths) + 2 * 77


def test_length_batches_trade_padding_against_calls():
    from pipeline.encoding.encode import CALL_COST, _length_batches

    assert CALL_COST > 1  # a lone text of a new length joins its neighbours rather than get its own call
    lengths = [10] * 50 + [11] + [12] * 50 + [70] * 3
    batches = _length_batches(lengths, batch_size=64)
    assert sorted(r for b in batches for r in b) == list(range(len(lengths)))
    longest = [max(lengths[r] for r in b) for b in batches]
    assert longest == [12, 70] and [len(b) for b in batches] == [101, 3]
    # a batch never holds more than batch_size x 77 tokens once trimmed
    assert all(len(b) * 10 <= 4 * 77 for b in _length_batches([10] * 100, batch_size=4))


def test_the_causal_mask_is_sliced_to_the_trimmed_length(tiny_clip, one_thread):
    from pipeline.encoding.load import load_clip
    from pipeline.encoding.openai_clip import text_mask_is_causal

    encoder = load_clip(str(tiny_clip), "cpu")
    assert text_mask_is_causal(encoder.model)
    masks = []
    for block in encoder.model.transformer.resblocks:
        block.attn.register_forward_pre_hook(
            lambda m, args, kwargs: masks.append(kwargs["attn_mask"]), with_kwargs=True
        )
    tokens = encoder.tokenize(["a cat and a dog.", "a tree"])
    length = int(tokens.argmax(dim=-1).max()) + 1
    trimmed = encoder.encode_tokens(tokens)
    assert masks and all(m.shape == (length, length) for m in masks)
    causal = torch.full((length, length), float("-inf")).triu(1)
    assert all(torch.equal(m.float(), causal) for m in masks)
    np.testing.assert_allclose(trimmed, padded(encoder, ["a cat and a dog.", "a tree"]), atol=1e-5, rtol=0)


def test_a_text_model_without_a_causal_mask_keeps_77_tokens(tiny_clip, one_thread):
    from pipeline.encoding.load import load_clip
    from pipeline.encoding.openai_clip import text_mask_is_causal

    encoder = load_clip(str(tiny_clip), "cpu")
    for block in encoder.model.transformer.resblocks:
        block.attn_mask = None  # bidirectional: padding would change the features, so trimming is not exact
    assert not text_mask_is_causal(encoder.model)
    seen = []
    encoder.model.token_embedding.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    encoder.encode_texts(["a cat", "a dog"])
    assert seen == [77]
