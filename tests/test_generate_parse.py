"""The answer parser on realistic chat-model output (SmolLM2 / Llama / GPT-style chatter)."""

from __future__ import annotations

import pytest

from pipeline.generate.parse import parse_answer


@pytest.mark.parametrize(
    ("raw", "caption"),
    [
        ('Sure! Here\'s a caption: "A cat curled up on a sofa." I hope this helps!', "A cat curled up on a sofa."),
        ('"A cat and a dog playing in the garden."', "A cat and a dog playing in the garden."),
        ("\u201cA boat on a calm lake.\u201d \u2014 This caption evokes tranquility.", "A boat on a calm lake."),
        ("Caption: A red bus parked next to a bicycle.", "A red bus parked next to a bicycle."),
        ("Image caption - A potted plant beside a tv monitor.", "A potted plant beside a tv monitor."),
        (
            'Here is a brief caption for the image:\n\n**"A sheep grazing on a hill."**\n\n'
            "Let me know if you need anything else!",
            "A sheep grazing on a hill.",
        ),
        (
            "Certainly!\n\nA person riding a motorbike down a country road. This caption highlights the sense "
            "of freedom.",
            "A person riding a motorbike down a country road.",
        ),
        (
            "A horse grazes in a field. A child watches from the fence.\n\nI hope you like it!",
            "A horse grazes in a field. A child watches from the fence.",
        ),
        ("Sure thing! A train crossing a bridge at sunset.", "A train crossing a bridge at sunset."),
        ("Here's a shorter version: A cat on a sofa.", "A cat on a sofa."),
        ("1. A cat on a chair.\n2. A dog on a sofa.", "A cat on a chair."),
        ("### Caption\nA horse and a person in a field.", "A horse and a person in a field."),
        ("<|im_start|>assistant\nA bird on a boat.<|im_end|>", "A bird on a boat."),
        ('"A cute puppy with a bottle". (5 words)', "A cute puppy with a bottle"),
        ("A dog on a sofa. Would you like another one?", "A dog on a sofa."),
        # a colon inside the caption is not a preamble
        (
            "The TV Monitor with Sofa: A perfect example of how TV can be used to bring people together.",
            "The TV Monitor with Sofa: A perfect example of how TV can be used to bring people together.",
        ),
        (
            "Sure! Here's a caption for an image that contains a cat:\n\nA fluffy cat on a windowsill.",
            "A fluffy cat on a windowsill.",
        ),
        ("A cat sits on the mat.", "A cat sits on the mat."),
    ],
)
def test_captions_are_cleaned(raw, caption):
    parsed = parse_answer(raw)
    assert parsed.ok and parsed.reason is None
    assert parsed.text == caption


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("  \n\t ", "empty"),
        ("<|im_end|>", "empty"),
        ("I'm sorry, but I can't see images.", "refusal"),
        ("I\u2019m sorry, I cannot help with that.", "refusal"),
        ("As an AI language model, I cannot view images.", "refusal"),
        ("Sure! Unfortunately, I am unable to describe images I cannot see.", "refusal"),
        ('"I apologize, but I do not have enough information."', "refusal"),
        ("I'm a helpful AI named SmolLM, designed to provide you with clear and concise captions.", "refusal"),
        ("As a text-based AI, I can't see pictures.", "refusal"),
        ("Sure, here is a caption:", "unparseable"),
        ("Here are some captions:", "unparseable"),
        ("...", "unparseable"),
        ("Could you tell me more about the image?", "unparseable"),
        ("**Caption:**", "unparseable"),
    ],
)
def test_unusable_answers_say_why(raw, reason):
    parsed = parse_answer(raw)
    assert not parsed.ok and parsed.text is None
    assert parsed.reason == reason


def test_an_answer_cut_at_max_tokens_keeps_only_finished_sentences():
    assert parse_answer("A cat sits on the mat. The dog barks at", truncated=True).text == "A cat sits on the mat."
    # nothing finished: reported as truncated (the chat then asks for a shorter caption)
    assert parse_answer('"A cat sits on a very long', truncated=True).reason == "truncated"
    assert parse_answer("A cat sits on the mat. The dog barks at").text == "A cat sits on the mat. The dog barks at"
    # the cut fell in the chatter after a complete caption: the caption stands
    cut_chatter = 'Here\'s a caption: "A cat on a mat." I hope this caption captures the essence of'
    assert parse_answer(cut_chatter, truncated=True).text == "A cat on a mat."
    assert parse_answer("A cat on a mat\n\nI hope this helps and you can use", truncated=True).text == "A cat on a mat"
