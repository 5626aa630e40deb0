"""Turn an LLM's chat answer into one clean caption, or say why it cannot.

Chat models wrap captions in chatter: "Sure! Here's a caption: "A cat on a sofa." I hope this
helps!". `parse_answer` strips preambles, markdown, quotes and trailing chatter and keeps the
first caption sentence(s). It never guesses: an answer it cannot read is reported (reason
`empty`, `refusal`, `unparseable` or `truncated`), never kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EMPTY = "empty"
REFUSAL = "refusal"
UNPARSEABLE = "unparseable"
TRUNCATED = "truncated"  # cut at max_tokens before a sentence ended: the caller asks for a shorter one

_SPECIAL_TOKENS = re.compile(
    r"<\|(?:im_start|start_header_id)\|>\s*(?:system|user|assistant)?(?:<\|end_header_id\|>)?|"
    r"<\|[^|<>]{1,40}\|>|</?s>|\[/?INST\]",
    re.IGNORECASE,
)
_HEADING = re.compile(r"^\s*#{1,6}\s")
_LABEL_ONLY = re.compile(
    r"^\s*(?:(?:image|photo|short|brief|possible|suggested|new|shorter|alternative|alt)\s+)*"
    r"(?:caption|description|title|answer|response|output)\s*(?:#?\d+)?\s*[:\-]?\s*$",
    re.IGNORECASE,
)
_FENCE = re.compile(r"^\s*```[\w-]*\s*$", re.MULTILINE)
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})

_ACK = r"(?:sure(?: thing)?|certainly|of course|absolutely|okay|ok|alright|all right|great|yes|no problem|gladly|happy to help)"
# A line that is only an acknowledgement: "Sure!", "Certainly.", "Of course, happy to help!"
_ACK_LINE = re.compile(rf"^\s*{_ACK}\b[\s!.,]*(?:{_ACK}\b[\s!.,]*)*$", re.IGNORECASE)
# An acknowledgement in front of the caption: "Sure! A cat ..." -> "A cat ..."
_ACK_PREFIX = re.compile(rf"^\s*{_ACK}[!.,]+\s+", re.IGNORECASE)
# "Caption:", "Caption 2:", "Image caption -", "Title:", "Answer:"
_LABEL_PREFIX = re.compile(
    r"^\s*(?:(?:image|photo|short|brief|possible|suggested|new|shorter|alternative|alt)\s+)*"
    r"(?:caption|description|title|answer|response|output|text)\s*(?:#?\d+)?\s*[:\-\u2013\u2014]\s*",
    re.IGNORECASE,
)
_PREAMBLE_WORDS = re.compile(
    r"\b(?:here(?:'s| is| are| goes)|caption|captions|description|describe|described|version|option|alternative|"
    r"shorter|image|picture|photo|following)\b",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"^\s*(?:i'?m sorry|i am sorry|sorry\b|i apologi[sz]e|my apologies|as an ai\b|as a language model|"
    r"as an artificial intelligence|i cannot\b|i can'?t\b|i can not\b|i'?m unable|i am unable|"
    r"i'?m not able|i am not able|i do not have the ability|i don'?t have the ability|unfortunately,? i\b|"
    r"i'?m afraid i|i won'?t\b|i will not\b|"
    r"(?:i'?m|i am|as) (?:just )?(?:a|an) (?:helpful |friendly |text-based |large )?(?:ai|assistant|language model|chatbot)\b)",
    re.IGNORECASE,
)
_CHATTER = re.compile(
    r"^\s*(?:i hope|hope (?:this|that|you)|let me know|feel free|this caption|the caption|that caption|"
    r"this description|the description|this sentence|this image caption|in this caption|note\b|please note|"
    r"if you|would you like|do you want|want me to|shall i|should i|alternatively|or\s*:|i'?ve|i have|"
    r"i tried|i made|i kept|i used|here'?s another|here is another|another option|thank you|thanks|enjoy|"
    r"word count|\(\s*\d+\s+words?\s*\)|explanation\b|this captures|this conveys|this highlights|"
    r"this emphasizes|this emphasises|this version|the image (?:shows|depicts) exactly)",
    re.IGNORECASE,
)
_BULLET = re.compile(r"^\s*(?:[-*\u2022>]+|#{1,6}|\d{1,2}[.)]|\(\d{1,2}\))\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)]*\s+(?=[\"'\u201c\u2018(]?[A-Z0-9])")
_QUOTES = {'"': '"', "\u201c": "\u201d", "'": "'", "\u2018": "\u2019", "\u00ab": "\u00bb", "`": "`"}
_TRAILING_NOTE = re.compile(r"\s*\((?:\d+\s+words?|[^()]*\bwords?\b[^()]*|note[^()]*)\)\s*$", re.IGNORECASE)
_HAS_LETTER = re.compile(r"[^\W\d_]")


@dataclass(frozen=True)
class Parsed:
    """`text` when the answer holds a caption; else `reason` (and what was left in `detail`)."""

    text: str | None
    reason: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.text is not None


def _strip_markdown(line: str) -> str:
    line = _BULLET.sub("", line)
    line = re.sub(r"(\*\*|__|\*|~~)(.+?)\1", r"\2", line)  # **bold**, *italic*, __bold__
    line = line.replace("**", "").replace("`", "")
    return line.strip()


def _strip_quotes(text: str) -> str:
    text = text.strip()
    for _ in range(3):
        if len(text) >= 2 and text[0] in _QUOTES and text[-1] == _QUOTES[text[0]]:
            text = text[1:-1].strip()
        elif len(text) >= 2 and text[0] in _QUOTES and text[-1] in ".!" and text[-2] == _QUOTES[text[0]]:
            text = text[1:-2].strip() + ("" if text[-3:-2] in ".!?" else text[-1])  # "A cat". -> A cat.
        else:
            break
    return text


def _leading_quote(text: str) -> str | None:
    """'"A cat on a sofa." This caption ...' -> 'A cat on a sofa.' (the quoted caption, chatter after it dropped)."""
    if not text or text[0] not in _QUOTES or text[0] == "'":
        return None
    close = text.find(_QUOTES[text[0]], 1)
    if close <= 1:
        return None
    return text[1:close].strip()


def _drop_preamble(line: str) -> str | None:
    """The caption part of a line, '' if the line is only a preamble, None if it has no preamble."""
    if _ACK_LINE.match(line):
        return ""
    stripped = _ACK_PREFIX.sub("", line)
    labelled = _LABEL_PREFIX.sub("", stripped, count=1)
    if labelled != stripped:
        return labelled.strip()
    head, colon, tail = stripped.partition(":")
    if colon and len(head) <= 120 and _PREAMBLE_WORDS.search(head) and not _leading_quote(head.strip()):
        return tail.strip()
    if stripped != line:
        return stripped.strip()
    if re.match(r"^\s*here(?:'s| is| are)\b", line, re.IGNORECASE) and re.search(r"\bcaptions?\b", line, re.I):
        return ""  # "Here is a caption for the image." with the caption on the next line
    return None


def _first_sentences(text: str) -> str:
    """Sentences up to the first bit of chatter ("I hope this helps", "This caption ...")."""
    sentences = [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]
    kept: list[str] = []
    for sentence in sentences:
        if kept and (_CHATTER.match(sentence) or sentence.endswith("?")):
            break
        kept.append(sentence)
    return " ".join(kept)


def parse_answer(raw: str | None, *, truncated: bool = False) -> Parsed:
    """One caption from a chat answer. `truncated`: the answer was cut at max_tokens."""
    if raw is None or not raw.strip():
        return Parsed(None, EMPTY, "")
    text = _SPECIAL_TOKENS.sub("", raw.translate(_APOSTROPHES))
    text = _FENCE.sub("", text)
    raw_lines = [line for line in text.splitlines() if _strip_markdown(line)]
    # A markdown heading ("### Caption") is a title, not the caption, when something follows it.
    lines = [
        _strip_markdown(line)
        for i, line in enumerate(raw_lines)
        if not (_HEADING.match(line) and i < len(raw_lines) - 1)
    ]
    if not lines:
        return Parsed(None, EMPTY, raw.strip()[:200])

    candidate = None
    on_last_line = False
    for number, line in enumerate(lines):
        on_last_line = number == len(lines) - 1
        if _REFUSAL.match(_strip_quotes(line)):
            return Parsed(None, REFUSAL, raw.strip()[:500])
        part = "" if _LABEL_ONLY.match(line) else _drop_preamble(line)
        if part is None:
            candidate = line
            break
        part = _strip_markdown(part)
        if part and _REFUSAL.match(part):
            return Parsed(None, REFUSAL, raw.strip()[:500])
        if part and part.rstrip().endswith(":") and _PREAMBLE_WORDS.search(part):
            continue  # "Sure! Here's a caption for an image that contains a cat:" then the caption
        if part:
            candidate = part
            break
    if candidate is None:
        return Parsed(None, UNPARSEABLE, raw.strip()[:500])

    quoted = _leading_quote(candidate)
    if quoted is not None:
        candidate = quoted
    elif candidate[:1] in _QUOTES and candidate[:1] != "'":
        candidate = candidate[1:]  # an opening quote that never closes
    candidate = _strip_quotes(candidate)
    candidate = _TRAILING_NOTE.sub("", candidate)
    candidate = _first_sentences(candidate)
    candidate = _strip_quotes(_TRAILING_NOTE.sub("", candidate)).strip()

    if truncated and on_last_line and quoted is None and not re.search(r"[.!?]$", candidate):
        # The answer ran into max_tokens inside the caption: keep only the finished sentences.
        sentences = [s for s in _SENTENCE_END.split(candidate) if s.strip()]
        if len(sentences) <= 1:
            return Parsed(None, TRUNCATED, candidate[:500])
        candidate = " ".join(s.strip() for s in sentences[:-1])

    if _REFUSAL.match(candidate):
        return Parsed(None, REFUSAL, raw.strip()[:500])
    if not candidate or not _HAS_LETTER.search(candidate):
        return Parsed(None, UNPARSEABLE if raw.strip() else EMPTY, raw.strip()[:500])
    if candidate.endswith(":") or candidate.endswith("?"):
        return Parsed(None, UNPARSEABLE, raw.strip()[:500])
    return Parsed(candidate)
